"""Policy + users + nodes → ``CompiledPolicy`` (per-node filters, SSH, caps, peers, routes).

Compilation follows headscale's ``policy/v2`` pipeline (PROTOCOL.md §5.4-5.5), with the
output Tailscale's control plane produces where the two differ (golden captures). It runs in
stages, each an object built from explicit inputs (and testable alone):

1. ``AliasResolver`` (resolver.py): aliases against the tailnet → node ids and addresses.
2. ``compile_rules`` (grants.py): ACLs and grants → global rules (``_Rule``), merged by
   (SrcIPs, IPProto); ``autogroup:self`` and ``via`` grants kept for per-user / per-router
   expansion.
3. ``RuleIndex`` (ruleindex.py): every destination entry of a global rule indexed by the nodes
   that keep it after per-node reduction, so a node's filter costs the size of that filter.
4. ``NodeFilters`` (nodefilter.py): each node's reduced packet filter, self and via rules.
5. ``Visibility`` (visibility.py): a node's peers from the rules' (source, destination) node
   matchers, shared per visibility class, plus same-user and via-router edges.

``CompiledPolicy`` builds them in that order and answers per node; SSH policies, capability
maps and digests are built here from the stages. Everything per node is computed on first use
and cached. A ``CompiledPolicy`` never changes; new users, nodes or policy mean a new one
(compare ``node_digest`` to find changed nodes). Built with ``previous=`` it reuses the
previous tailnet indexes when users and nodes are the same objects, and hands out the previous
result objects (peer sets, filters) where equal, so map sessions can skip unchanged views by
identity; a node whose filter key did not move gets its previous filter without a rebuild
(carryover.py). Nodes keeping the same entries and no per-node rules share one filter list;
autogroup:self extras are one set per user.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from ..model import Node, User
from .aliases import NOTHING, Resolved
from .carryover import CarryOver
from .errors import PolicyError, Problem
from .grants import acl_to_grants, compile_rules
from .ipset import AddrSet
from .model import AG_SELF, USER, Alias, Policy
from .nodefilter import NodeFilters
from .resolver import AliasResolver
from .rule import Rule, _Rule
from .ruleindex import RuleIndex
from .tailnet import Tailnet
from .visibility import Visibility

__all__ = ["CompiledPolicy", "acl_to_grants", "compile_policy"]


class CompiledPolicy:
    """Everything a map response needs from the policy, per node (see module docstring)."""

    def __init__(self, policy: Policy | None, users: Sequence[User], nodes: Sequence[Node], *,
                 server_url: str = "", previous: CompiledPolicy | None = None) -> None:
        self.policy = policy
        self.server_url = server_url.rstrip("/")
        self.tailnet = Tailnet.reuse(previous.tailnet, users, nodes) if previous is not None else None
        if self.tailnet is None:
            self.tailnet = Tailnet(users, nodes)
        # No policy at all: the literal allow-all filter (PROTOCOL.md §5.4).
        self.allow_all = policy is None
        # Results equal to the previous compilation's keep their identity (carryover.py).
        carry = CarryOver(previous, len(self.tailnet.nodes))
        self.resolver = AliasResolver(policy, self.tailnet)
        self.index = RuleIndex(self.tailnet, compile_rules(policy, self.resolver), self.resolver)
        self.visibility = Visibility(self.tailnet, self.index, self.resolver, carry)
        self.node_filters = NodeFilters(self.tailnet, self.index, carry, allow_all=self.allow_all)
        # lazily filled per node
        self._ssh_cache: dict[int, dict[str, Any] | None] = {}
        self._capmaps: dict[int, dict[str, Any]] | None = None
        self._ssh: Any = None
        self._rule_digests: dict[int, tuple[Any, bytes]] = {}   # id(obj) -> (obj, digest)

    # --- stages, as callers (ssh.py, routes.py, tests.py, the service) use them --------
    def resolve(self, alias: Alias) -> Resolved:
        return self.resolver.resolve(alias)

    def resolve_error(self, alias: Alias) -> bool:
        return self.resolver.resolve_error(alias)

    def full(self, r: Resolved) -> AddrSet:
        return self.resolver.full(r)

    def strings(self, r: Resolved) -> list[str]:
        return self.resolver.strings(r)

    def entry_nodes(self, lo: int, hi: int) -> frozenset[int]:
        return self.resolver.entry_nodes(lo, hi)

    def nodes_in(self, addrs: AddrSet, *, routes: bool = True, base: Iterable[int] = ()) -> frozenset[int]:
        return self.resolver.nodes_in(addrs, routes=routes, base=base)

    @property
    def global_rules(self) -> list[_Rule]:
        """The unreduced global rules (used by policy tests and route checks)."""
        return self.index.rules

    def filter_rules(self, node_id: int) -> list[Rule]:
        """The node's reduced ``PacketFilter`` rules (wire JSON); cached, treat as read-only."""
        return self.node_filters.filter_rules(node_id)

    def self_rules_for(self, nid: int) -> list[_Rule]:
        return self.node_filters.self_rules_for(nid)

    def via_rules(self, nid: int) -> list[_Rule]:
        return self.node_filters.via_rules(nid)

    def peers(self, node_id: int) -> frozenset[int]:
        """Ids of the nodes ``node_id`` may see (either side may reach the other)."""
        return self.visibility.peers(node_id)

    def peer_view(self, node_id: int) -> tuple[frozenset[int], frozenset[int]]:
        """``peers(node_id)`` as (base shared by its visibility class, own extra edges): the
        node sees (base | extra) - {node_id}. Callers hold the shared base, not a copy."""
        return self.visibility.peer_view(node_id)

    # ------------------------------------------------------------------
    # SSH, capabilities, digests
    def ssh_policy(self, node_id: int) -> dict[str, Any] | None:
        """``SSHPolicy`` wire JSON for the node, or None when the policy has no ``ssh`` rules."""
        if node_id in self._ssh_cache:
            return self._ssh_cache[node_id]
        if node_id not in self.tailnet.nodes:
            raise KeyError(node_id)
        if self.policy is None or not self.policy.ssh:
            result = None
        else:
            if self._ssh is None:
                from .ssh import SshCompiler
                self._ssh = SshCompiler(self, self.server_url)
            result = {"rules": self._ssh.rules_for(node_id)}
        self._ssh_cache[node_id] = result
        return result

    def cap_map(self, node_id: int) -> dict[str, Any]:
        """CapMap entries the policy adds to the node's self view (nodeAttrs and
        ``randomizeClientPort``); values are null as Tailscale sends them."""
        if self._capmaps is None:
            self._capmaps = self._build_capmaps()
        if node_id not in self.tailnet.nodes:
            raise KeyError(node_id)
        return self._capmaps.get(node_id, {})

    def _build_capmaps(self) -> dict[int, dict[str, Any]]:
        p = self.policy
        if p is None:
            return {}
        out: dict[int, dict[str, Any]] = defaultdict(dict)
        if p.randomize_client_port:
            for nid in self.tailnet.nodes:
                out[nid]["randomize-client-port"] = None
        for na in p.node_attrs:
            if not na.attrs:
                continue
            merged = NOTHING
            for a in na.targets:
                merged = merged.union(self.resolve(a))
            for nid in self.nodes_in(merged.addrs, routes=False, base=merged.nodes):
                for attr in na.attrs:
                    out[nid].setdefault(attr, None)
        return dict(out)

    def peer_cap_map(self, peer_id: int) -> dict[str, Any] | None:
        """Caps other nodes see on this peer: Tailscale marks every approved exit node with
        ``suggest-exit-node`` (captured for all exit nodes, with or without a nodeAttr)."""
        if peer_id not in self.tailnet.nodes:
            raise KeyError(peer_id)
        if peer_id in self.tailnet.exit_nodes:
            return {"suggest-exit-node": self.cap_map(peer_id).get("suggest-exit-node")}
        return None

    def node_digest(self, node_id: int) -> str:
        """A short hash of everything this object produces for the node (filter, SSH policy,
        caps, peers): equal digests across two compilations mean nothing to send."""
        h = hashlib.blake2b(digest_size=16)
        for part in self.node_digests(node_id).values():
            h.update(part.encode())
        return h.hexdigest()

    def node_digests(self, node_id: int) -> dict[str, str]:
        """Per-part hashes ("filter", "ssh", "caps", "peers") so a caller can tell which part
        of a node's view changed. Cheap: rule objects are shared between nodes and hashed
        once, and the peer set is hashed from its shared base set."""
        f = hashlib.blake2b(digest_size=16)
        for rule in self.filter_rules(node_id):
            f.update(self._filter_rule_digest(rule))
        s = hashlib.blake2b(digest_size=16)
        ssh = self.ssh_policy(node_id)
        s.update(b"none" if ssh is None else b"rules")
        for rule in (ssh or {}).get("rules", ()):
            s.update(self._digest_of(rule))
        caps = hashlib.blake2b(_canon([self.cap_map(node_id), self.peer_cap_map(node_id)]), digest_size=16)
        return {"filter": f.hexdigest(), "ssh": s.hexdigest(), "caps": caps.hexdigest(),
                "peers": f"{self.visibility.peers_digest(node_id):032x}"}

    def ssh_check_period(self, src_id: int, dst_id: int) -> float | None:
        """For SSH check mode: seconds a check stays valid for this source → destination pair
        (0 = check every time), from the first ``check`` rule covering the pair; None if none
        does. Default 12h (PROTOCOL.md §3.5; headscale ``SSHCheckParams``)."""
        if self.policy is None:
            return None
        t = self.tailnet
        src_addrs = t.addrs[src_id]
        for rule in self.policy.ssh:
            if rule.action != "check":
                continue
            merged = NOTHING
            for a in rule.src:
                merged = merged.union(self.resolve(a))
            if src_id not in merged.nodes and not merged.addrs.contains_any(src_addrs):
                continue
            for d in rule.dst:
                if d.is_autogroup(AG_SELF):
                    hit = t.owner_of(src_id) is not None and t.owner_of(src_id) == t.owner_of(dst_id)
                else:
                    r = self.resolve(d)
                    hit = dst_id in r.nodes or r.addrs.contains_any(t.addrs[dst_id])
                if hit:
                    period = rule.check_period
                    if period is None:
                        return 12 * 3600.0
                    return 0.0 if period.always else period.seconds
        return None

    def _filter_rule_digest(self, rule: Rule) -> bytes:
        """Rules are often rebuilt per node around shared parts (SrcIPs lists, DstPorts
        elements); hash those parts by identity."""
        cached = self._rule_digests.get(id(rule))
        if cached is not None and cached[0] is rule:
            return cached[1]
        h = hashlib.blake2b(digest_size=16)
        h.update(self._digest_of(rule["SrcIPs"]))
        for item in rule.get("DstPorts", ()):
            h.update(f'{item["IP"]}|{item["Ports"]["First"]}|{item["Ports"]["Last"]};'.encode())
        h.update(repr(rule.get("IPProto")).encode())
        if "CapGrant" in rule:
            h.update(_canon(rule["CapGrant"]))
        digest = h.digest()
        self._rule_digests[id(rule)] = (rule, digest)
        return digest

    def _digest_of(self, obj: Any) -> bytes:
        cached = self._rule_digests.get(id(obj))
        if cached is not None and cached[0] is obj:
            return cached[1]
        if isinstance(obj, list) and all(isinstance(x, str) for x in obj):
            blob = "\n".join(obj).encode()        # SrcIPs: a plain list of strings
        else:
            blob = _canon(obj)
        digest = hashlib.blake2b(blob, digest_size=16).digest()
        self._rule_digests[id(obj)] = (obj, digest)    # keeps obj alive, so ids stay unique
        return digest

    # --- routes and tags (routes.py) ------------------------------------------
    def node_can_have_tag(self, node: Node, tag: str) -> bool:
        from .routes import node_can_have_tag
        return node_can_have_tag(self, node, tag)

    def auto_approved_routes(self, node: Node) -> set[str]:
        from .routes import auto_approved_routes
        return auto_approved_routes(self, node)

    def node_can_approve_route(self, node: Node, route: str) -> bool:
        from .routes import node_can_approve_route
        return node_can_approve_route(self, node, route)

    def allowed_ips_for_peer(self, viewer_id: int, peer_id: int,
                             primary_routes: Iterable[str] | None = None) -> list[str]:
        from .routes import allowed_ips_for_peer
        return allowed_ips_for_peer(self, viewer_id, peer_id, primary_routes)



def _canon(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def compile_policy(policy: Policy | None, users: Sequence[User], nodes: Sequence[Node], *,
                   server_url: str = "", run_tests: bool = True,
                   previous: CompiledPolicy | None = None) -> CompiledPolicy:
    """Compile for these users and nodes. Ambiguous user references raise ``PolicyError``;
    with ``run_tests`` so do failing ``tests``/``sshTests`` (pass False when loading a
    stored policy at boot, where a stale test must not lock the server out).

    ``previous`` (the compilation this one replaces) only lends what is still valid: its
    tailnet indexes when users and nodes are the same objects, and its result objects where
    the new results are equal, so unchanged views keep their identity."""
    compiled = CompiledPolicy(policy, users, nodes, server_url=server_url, previous=previous)
    if policy is not None:
        problems = _ambiguous_users(compiled)
        if run_tests and (policy.tests or policy.ssh_tests):
            from .tests import run_tests as run
            problems.extend(run(compiled))
        if problems:
            raise PolicyError(problems)
    return compiled


def _ambiguous_users(compiled: CompiledPolicy) -> list[Problem]:
    """A user token matching several users would silently drop rules: reject it."""
    p = compiled.policy
    assert p is not None
    tokens: dict[str, str] = {}
    for g, members in p.groups.items():
        for m in members:
            tokens.setdefault(m, f"groups[{json.dumps(g)}]")
    for tag, owners in p.tag_owners.items():
        for o in owners:
            if o.kind == USER:
                tokens.setdefault(o.name, f"tagOwners[{json.dumps(tag)}]")
    for i, acl in enumerate(p.acls):
        for a in list(acl.src) + [d.alias for d in acl.dst]:
            if a.kind == USER:
                tokens.setdefault(a.name, f"acls[{i}]")
    for i, g in enumerate(p.grants):
        for a in g.src + g.dst:
            if a.kind == USER:
                tokens.setdefault(a.name, f"grants[{i}]")
    for i, r in enumerate(p.ssh):
        for a in r.src + r.dst:
            if a.kind == USER:
                tokens.setdefault(a.name, f"ssh[{i}]")
    out = []
    for token, path in tokens.items():
        if token.startswith("user:*@"):
            continue
        found = compiled.tailnet.user_matches(token)
        if len(found) > 1:
            names = ", ".join(f"{u.id}:{u.name}" for u in found)
            out.append(Problem(path, f'multiple users found: token "{token}" found: {names} '
                                     "(use the user's email to disambiguate)"))
    return out
