"""Per-node ``SSHPolicy`` (PROTOCOL.md §4.8, §5.7; headscale ``compileSSHPolicy``).

For the node being mapped, each ``ssh`` rule naming it as a destination yields SSHRules whose
principals are the source nodes' IPs (tagged sources once per tag, as Tailscale does). Rules
with ``localpart:*@domain`` users are split per source user so each user maps only to their
own email local part. Check rules sort before accept rules (most restrictive first).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .aliases import NOTHING, Resolved
from .ipset import int_to_addr
from .model import AG_NONROOT, AG_SELF, SshRule

if TYPE_CHECKING:
    from .compile import CompiledPolicy

__all__ = ["SshCompiler", "parse_localpart", "ssh_user_allowed"]

CHECK_URL = "/machine/ssh/action/$SRC_NODE_ID/to/$DST_NODE_ID?local_user=$LOCAL_USER"
_ACCEPT = {"accept": True, "allowAgentForwarding": True, "allowLocalPortForwarding": True,
           "allowRemotePortForwarding": True}


def parse_localpart(user: str) -> str | None:
    """The domain of a canonical ``localpart:*@<domain>`` entry, else None (a literal name)."""
    if not user.startswith("localpart:"):
        return None
    pattern = user[len("localpart:"):]
    at = pattern.rfind("@")
    if at < 0 or pattern[:at] != "*" or not pattern[at + 1:]:
        return None
    return pattern[at + 1:]


def ssh_user_allowed(users: dict[str, str], login: str) -> bool:
    """Whether an ``sshUsers`` map lets ``login`` in (``""`` denies, ``*`` covers non-root)."""
    if login == "":
        return False
    if login in users:
        return users[login] != ""
    if login == "root":
        return False
    return users.get("*", "") != ""


@dataclass(slots=True)
class _Prepared:
    rule: SshRule
    action: dict[str, Any]
    users: dict[str, str]
    localparts: dict[int, str]          # user id -> email local part
    user_ids: list[int]                 # source users, sorted
    by_user: dict[int, list[dict[str, str]]]
    tagged: list[dict[str, str]]
    src_nodes: frozenset[int]
    self_dst: bool
    other_dst: bool
    dst_nodes: frozenset[int]
    everyone: list[dict[str, str]]      # all source principals, users (by id) then tagged


class SshCompiler:
    def __init__(self, compiled: CompiledPolicy, server_url: str) -> None:
        self.c = compiled
        self.server_url = server_url.rstrip("/")
        self._prepared: list[_Prepared | None] | None = None
        self._rules: dict[tuple[int, int, int | None], dict[str, Any]] = {}
        self._keep: list[Any] = []

    def prepared(self) -> list[_Prepared | None]:
        if self._prepared is None:
            assert self.c.policy is not None
            self._prepared = [self._prepare(r) for r in self.c.policy.ssh]
        return self._prepared

    def _prepare(self, rule: SshRule) -> _Prepared | None:
        c, t = self.c, self.c.tailnet
        merged: Resolved = NOTHING
        for a in rule.src:
            merged = merged.union(c.resolve(a))
        if not merged or not c.full(merged):
            return None
        src_nodes = c.nodes_in(merged.addrs, routes=False, base=merged.nodes)
        tagged: list[dict[str, str]] = []
        user_addrs: dict[int, set[int]] = {}
        for nid in t.order:
            if nid not in src_nodes:
                continue
            node = t.nodes[nid]
            if node.tags:
                for _ in node.tags:
                    tagged.extend({"nodeIP": ip} for ip in t.node_ip_strings(nid))
            elif node.user_id is not None:
                user_addrs.setdefault(node.user_id, set()).update(t.addrs[nid])
        by_user = {uid: [{"nodeIP": str(int_to_addr(a))} for a in sorted(addrs)]
                   for uid, addrs in user_addrs.items() if addrs}
        if rule.action == "check":
            action = {"holdAndDelegate": self.server_url + CHECK_URL}
        else:
            action = dict(_ACCEPT)
        users: dict[str, str] = {}
        if AG_NONROOT in rule.users:
            users["*"] = "="
        users["root"] = "root" if "root" in rule.users else ""
        domains = []
        for u in rule.users:
            if u in ("root", AG_NONROOT):
                continue
            domain = parse_localpart(u)
            if domain is not None:
                domains.append(domain)
            else:
                users[u] = u
        localparts: dict[int, str] = {}
        for domain in domains:
            for user in t.users:
                at = user.email.rfind("@")
                if user.email and at >= 0 and user.email[at + 1:].lower() == domain.lower():
                    localparts[user.id] = user.email[:at]
        dst = NOTHING
        for a in rule.dst:
            if a.is_autogroup(AG_SELF) or c.resolve_error(a):
                continue
            dst = dst.union(c.resolve(a))
        dst_nodes = c.nodes_in(dst.addrs, routes=False, base=dst.nodes)
        self_dst = any(a.is_autogroup(AG_SELF) for a in rule.dst)
        other_dst = any(not a.is_autogroup(AG_SELF) for a in rule.dst)
        user_ids = sorted(by_user)
        everyone = [p for uid in user_ids for p in by_user[uid]] + tagged
        return _Prepared(rule, action, users, localparts, user_ids, by_user, tagged, src_nodes,
                         self_dst, other_dst, dst_nodes, everyone)

    def _rule(self, prep: _Prepared, principals: list[dict[str, str]], lp_user: int | None) -> dict[str, Any]:
        """One SSHRule; identical rules are the same object for every node (cheap digests)."""
        key = (id(prep), id(principals), lp_user)
        rule = self._rules.get(key)
        if rule is None:
            lp = prep.localparts.get(lp_user) if lp_user is not None else None
            users = {lp: lp} if lp is not None else prep.users
            rule = {"principals": principals, "sshUsers": users, "action": prep.action}
            if prep.rule.accept_env:
                rule["acceptEnv"] = list(prep.rule.accept_env)
            self._rules[key] = rule
            self._keep.append(principals)      # the key uses its id: keep it alive
        return rule

    def rules_for(self, nid: int) -> list[dict[str, Any]]:
        t = self.c.tailnet
        node = t.nodes[nid]
        owner = t.owner_of(nid)
        out: list[dict[str, Any]] = []
        for prep in self.prepared():
            if prep is None:
                continue

            def emit(principals: list[dict[str, str]], uid: int | None, prep: _Prepared = prep) -> None:
                out.append(self._rule(prep, principals, None))
                if uid is not None and uid in prep.localparts:
                    out.append(self._rule(prep, principals, uid))

            if prep.self_dst and owner is not None and prep.by_user.get(owner):
                emit(prep.by_user[owner], owner)
            if not prep.other_dst:
                continue
            if nid in prep.dst_nodes:
                if _has_localpart(prep.rule):
                    for uid in prep.user_ids:
                        emit(prep.by_user[uid], uid)
                    if prep.tagged:
                        emit(prep.tagged, None)
                elif prep.everyone:
                    emit(prep.everyone, None)
            elif _has_localpart(prep.rule) and nid in prep.src_nodes:
                # a source outside the destinations still gets rules for its own user
                if node.tags:
                    principals = [{"nodeIP": ip} for ip in t.node_ip_strings(nid)]
                    if principals:
                        emit(principals, None)
                elif owner is not None and prep.by_user.get(owner):
                    emit(prep.by_user[owner], owner)
        checks = [r for r in out if "holdAndDelegate" in r["action"]]
        accepts = [r for r in out if "holdAndDelegate" not in r["action"]]
        return checks + accepts


def _has_localpart(rule: SshRule) -> bool:
    return any(parse_localpart(u) is not None for u in rule.users)

