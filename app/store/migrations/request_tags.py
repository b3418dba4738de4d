"""Tag ownership as headscale 0.28's RequestTags migration judges it.

headscale 0.27 kept tags a client asked for (``--advertise-tags``) only in
``host_info.RequestTags``. Migration ``202601121700-migrate-hostinfo-request-tags`` moves the
ones the node's user may own (per the policy's ``tagOwners``) into ``nodes.tags``. Owners are
user tokens (``alice@``, ``alice@example.com``), ``group:…`` (of user tokens) and ``tag:…``
(whose own owners count, transitively). A user token resolves to the user whose
provider identifier equals it (without a trailing ``@``), else to the single user whose email
or name equals it. Anything we cannot read means "skip the migration", as headscale does:
tags are checked again when the node next connects.
"""

from __future__ import annotations

import json
from dataclasses import dataclass


class PolicyUnreadable(ValueError):
    pass


def hujson_to_json(text: str) -> str:
    """Remove // and /* */ comments and trailing commas (outside strings)."""
    out: list[str] = []
    i, n = 0, len(text)
    in_string = False
    while i < n:
        c = text[i]
        if in_string:
            out.append(c)
            if c == "\\" and i + 1 < n:
                out.append(text[i + 1])
                i += 2
                continue
            if c == '"':
                in_string = False
            i += 1
            continue
        if c == '"':
            in_string = True
            out.append(c)
            i += 1
        elif text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:
                raise PolicyUnreadable("unterminated comment")
            i = end + 2
        elif c in "]}":
            j = len(out) - 1
            while j >= 0 and out[j] in " \t\r\n":
                j -= 1
            if j >= 0 and out[j] == ",":
                del out[j]
            out.append(c)
            i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


@dataclass(frozen=True)
class UserRow:
    id: int
    name: str
    email: str
    provider_identifier: str | None


class TagOwners:
    def __init__(self, policy_text: str, users: list[UserRow]) -> None:
        try:
            doc = json.loads(hujson_to_json(policy_text))
        except ValueError as exc:
            raise PolicyUnreadable(str(exc)) from None
        if not isinstance(doc, dict):
            raise PolicyUnreadable("policy is not an object")
        self._users = users
        self._groups = self._read_map(doc.get("groups") or {}, "group:")
        self._owners = self._read_map(doc.get("tagOwners") or {}, "tag:")
        for owners in [*self._owners.values(), *self._groups.values()]:
            for owner in owners:
                if not (owner.startswith(("group:", "tag:")) or "@" in owner):
                    raise PolicyUnreadable(f"invalid owner {owner!r}")

    @staticmethod
    def _read_map(value: object, prefix: str) -> dict[str, list[str]]:
        if not isinstance(value, dict):
            raise PolicyUnreadable(f"{prefix} map is not an object")
        out = {}
        for key, items in value.items():
            if not isinstance(key, str) or not key.startswith(prefix):
                raise PolicyUnreadable(f"invalid name {key!r}")
            if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
                raise PolicyUnreadable(f"{key} must list strings")
            out[key] = items
        return out

    def _resolve_user(self, token: str) -> int | None:
        wanted = token.removesuffix("@")
        matches = []
        for user in self._users:
            if user.provider_identifier is not None and user.provider_identifier == wanted:
                return user.id
            if user.email == wanted or user.name == wanted:
                matches.append(user.id)
        return matches[0] if len(matches) == 1 else None

    def _owner_user_ids(self, tag: str, seen: frozenset[str] = frozenset()) -> set[int]:
        ids: set[int] = set()
        for owner in self._owners.get(tag, []):
            if owner.startswith("tag:"):
                if owner not in seen:
                    ids |= self._owner_user_ids(owner, seen | {tag})
            elif owner.startswith("group:"):
                for member in self._groups.get(owner, []):
                    uid = self._resolve_user(member)
                    if uid is not None:
                        ids.add(uid)
            else:
                uid = self._resolve_user(owner)
                if uid is not None:
                    ids.add(uid)
        return ids

    def user_may_own(self, user_id: int | None, tag: str) -> bool:
        if user_id is None or tag not in self._owners:
            return False
        return user_id in self._owner_user_ids(tag)
