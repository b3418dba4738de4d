"""Alias text → ``Alias`` (headscale ``parseAlias``), and alias → addresses.

Resolution works on a ``Tailnet`` index and yields ``Resolved``: the nodes an identity alias
names (users, groups, tags, autogroups) plus the literal address space of address aliases
(IPs, CIDRs, hosts, ``*``). Keeping node ids apart from addresses lets the compiler match
nodes by set membership instead of scanning IPs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .ipset import ALL, EMPTY, INTERNET, AddrSet, parse_prefix
from .ipset import WILDCARD as WILDCARD_ADDRS
from .model import (
    AG_DANGER_ALL,
    AG_INTERNET,
    AG_MEMBER,
    AG_TAGGED,
    AUTOGROUP,
    AUTOGROUPS,
    GROUP,
    HOST,
    PREFIX,
    TAG,
    USER,
    WILDCARD,
    Alias,
)

if TYPE_CHECKING:
    from .model import Policy
    from .tailnet import Tailnet

__all__ = [
    "NOTHING",
    "AliasError",
    "Resolved",
    "parse_alias",
    "resolve",
    "tag_name_problem",
]


class AliasError(ValueError):
    pass


def _is_host(text: str) -> bool:
    return "@" not in text and ":" not in text


def parse_alias(text: str) -> Alias:
    """Classify one alias string; the checks run in headscale's order (IP/CIDR first)."""
    if text != "*":
        try:
            net = parse_prefix(text)
        except ValueError:
            pass
        else:
            return Alias(PREFIX, text, net)
    if text == "*":
        return Alias(WILDCARD, "*")
    if "@" in text:
        return Alias(USER, text)
    if text.startswith("group:"):
        return Alias(GROUP, text)
    if text.startswith("tag:"):
        return Alias(TAG, text)
    if text.startswith("autogroup:"):
        return Alias(AUTOGROUP, text)
    if _is_host(text):
        return Alias(HOST, text)
    raise AliasError(f'invalid alias format: "{text}"')


def tag_name_problem(name: str) -> str | None:
    """Tags are ``tag:`` followed by an ASCII letter (SaaS rule)."""
    if not name.startswith("tag:"):
        return f"tag must start with 'tag:', got: \"{name}\""
    rest = name[4:]
    if not rest or not ("a" <= rest[0] <= "z" or "A" <= rest[0] <= "Z"):
        return "tag names must start with a letter, after 'tag:'"
    return None


def autogroup_problem(name: str) -> str | None:
    if name in AUTOGROUPS:
        return None
    if name in ("autogroup:admin", "autogroup:owner", "autogroup:it-admin", "autogroup:network-admin",
                "autogroup:billing-admin", "autogroup:auditor", "autogroup:shared"):
        return (f'"{name}" is not supported: headscale has no user roles; '
                "use a group of users instead")
    return f'invalid autogroup: got "{name}", must be one of [{" ".join(AUTOGROUPS)}]'


@dataclass(frozen=True, slots=True)
class Resolved:
    """What an alias (or a list of them) stands for."""

    nodes: frozenset[int] = frozenset()     # identity matches: all of their addresses count
    addrs: AddrSet = EMPTY                  # literal address space

    def __bool__(self) -> bool:
        return bool(self.nodes) or bool(self.addrs)

    def union(self, other: Resolved) -> Resolved:
        if not other:
            return self
        if not self:
            return other
        addrs = self.addrs.union(other.addrs) if other.addrs else self.addrs
        return Resolved(self.nodes | other.nodes, addrs)


NOTHING = Resolved()


def resolve(alias: Alias, policy: Policy, tailnet: Tailnet) -> Resolved:
    """Resolve one alias (autogroup:self is per node and resolves to nothing here)."""
    kind = alias.kind
    if kind == WILDCARD:
        return Resolved(addrs=WILDCARD_ADDRS)
    if kind == PREFIX:
        assert alias.net is not None
        return Resolved(addrs=AddrSet.of_networks([alias.net]))
    if kind == HOST:
        net = policy.hosts.get(alias.name)
        return Resolved(addrs=AddrSet.of_networks([net])) if net is not None else NOTHING
    if kind == USER:
        uids = tailnet.user_ids(alias.name)
        if len(uids) == 1:
            return Resolved(nodes=tailnet.user_nodes(uids[0]))
        return Resolved(nodes=frozenset().union(*(tailnet.user_nodes(u) for u in uids)))
    if kind == GROUP:
        nodes: set[int] = set()
        for member in policy.groups.get(alias.name, ()):
            uid = tailnet.user_id(member)
            if uid is not None:
                nodes |= tailnet.user_nodes(uid)
        return Resolved(nodes=frozenset(nodes))
    if kind == TAG:
        return Resolved(nodes=tailnet.tag_nodes(alias.name))
    if kind == AUTOGROUP:
        name = alias.name
        if name == AG_MEMBER:
            return Resolved(nodes=tailnet.member_nodes)
        if name == AG_TAGGED:
            return Resolved(nodes=tailnet.tagged_nodes)
        if name == AG_INTERNET:
            return Resolved(addrs=INTERNET)
        if name == AG_DANGER_ALL:
            return Resolved(addrs=ALL)
    return NOTHING

