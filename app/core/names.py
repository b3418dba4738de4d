"""MagicDNS names: hostname sanitising and collision-free node labels.

A node's DNS label ("given name") is its reported hostname made into a valid DNS label
(the same rules as Tailscale's dnsname.SanitizeHostname), bumped to ``label-1``,
``label-2``… when another node already holds it. An admin rename is kept when the client's
hostname later changes; a label that still looks auto-derived follows the hostname.
"""

from __future__ import annotations

import re
from collections.abc import Container

MAX_LABEL = 63
MAX_NAME = 253
FALLBACK_LABEL = "node"
_SEPARATORS = frozenset(" .@_")
_LABEL_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def _alnum(c: str) -> bool:
    return c.isascii() and c.isalnum()


def sanitize_label(label: str) -> str:
    """Turn arbitrary text into an RFC 1035 label (may return "")."""
    end = min(len(label), MAX_LABEL)
    start = 0
    while start < end and not _alnum(label[start]):
        start += 1
    while end > start and not _alnum(label[end - 1]):
        end -= 1
    out = []
    for i in range(start, end):
        c = label[i]
        boundary = i == start or i == end - 1
        if not boundary and c in _SEPARATORS:
            out.append("-")
        elif _alnum(c) or c == "-":
            out.append(c.lower())
    return "".join(out)


def sanitize_hostname(hostname: str) -> str:
    for suffix in (".local", ".localdomain", ".lan"):
        if hostname.endswith(suffix):
            hostname = hostname[: -len(suffix)]
            break
    return sanitize_label(hostname)


def valid_label(label: str) -> bool:
    return bool(_LABEL_RE.match(label))


def unique_label(base: str, taken: Container[str]) -> str:
    """``base`` or the first free ``base-N``."""
    base = base or FALLBACK_LABEL
    candidate, n = base, 0
    while candidate in taken:
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def is_auto_derived(given: str, hostname: str) -> bool:
    """Whether ``given`` is what the hostname would produce (possibly collision-bumped)."""
    base = sanitize_hostname(hostname) or FALLBACK_LABEL
    if given == base:
        return True
    suffix = given[len(base) + 1:] if given.startswith(base + "-") else ""
    return suffix.isdigit()


def fqdn(given_name: str, base_domain: str) -> str:
    """The node's MagicDNS name with its trailing dot."""
    if base_domain:
        return f"{given_name}.{base_domain.strip('.')}."
    return f"{given_name}."


class LabelHints:
    """``unique_label`` for new nodes without probing ``base-1``, ``base-2``… from the start
    every time: ten thousand nodes reporting the same hostname made each join O(N).

    Per base it remembers ``next``: every ``base-k`` with ``k < next`` was taken when last
    looked, except suffixes reported ``released`` since (those are checked first). The answer
    is exactly ``unique_label``'s (the lowest free ``base-N``). ``reset()`` whenever a name
    this handed out was not taken after all (a failed insert)."""

    def __init__(self) -> None:
        self._next: dict[str, int] = {}
        self._freed: dict[str, set[int]] = {}

    def pick(self, base: str, taken: Container[str]) -> str:
        base = base or FALLBACK_LABEL
        if base not in taken:
            return base
        start = self._next.get(base, 1)
        freed = sorted(k for k in self._freed.pop(base, ()) if k < start and f"{base}-{k}" not in taken)
        if freed:
            if len(freed) > 1:
                self._freed[base] = set(freed[1:])
            return f"{base}-{freed[0]}"
        n = start
        while f"{base}-{n}" in taken:
            n += 1
        self._next[base] = n + 1
        return f"{base}-{n}"

    def released(self, label: str) -> None:
        """``label`` is free again (its node was deleted or renamed)."""
        base, sep, suffix = label.rpartition("-")
        if sep and suffix.isascii() and suffix.isdigit() and base in self._next:
            self._freed.setdefault(base, set()).add(int(suffix))

    def reset(self) -> None:
        self._next.clear()
        self._freed.clear()
