"""Policy + users + nodes → ``CompiledPolicy`` (per-node filters, SSH, caps, peers, routes).

Compilation follows headscale's ``policy/v2`` pipeline (PROTOCOL.md §5.4-5.5), with the
output Tailscale's control plane produces where the two differ (golden captures):

1. ACLs become grants (one per destination; non-``autogroup:self`` ones first). A policy
   without ``acls`` and ``grants`` gets Tailscale's default grant ``* -> *:*``.
2. Each grant's sources resolve once; regular destinations become *global* rules, merged by
   (SrcIPs, IPProto). ``autogroup:self`` and ``via`` destinations are kept as per-user /
   per-router data and expanded on demand.
3. Every destination entry of a global rule is indexed by the nodes that keep it after
   per-node reduction (owner of its addresses, subnet routers overlapping it, exit nodes for
   public addresses), so a node's filter costs the size of that filter, not of the policy.
4. Visibility: each rule is a matcher (source nodes, destination nodes). A node's peers are
   the destinations of matchers it is a source of plus the sources of matchers it is a
   destination of (symmetric), plus same-user (autogroup:self) and via-router edges.

Everything per node is computed on first use and cached. A ``CompiledPolicy`` never changes;
new users, nodes or policy mean a new one (compare ``node_digest`` to find changed nodes).
Built with ``previous=`` it reuses the previous tailnet indexes when users and nodes are the
same objects, and hands out the previous result objects (peer sets, filters) where equal, so
map sessions can skip unchanged views by identity; a node whose filter key did not move gets
its previous filter without a rebuild (carryover.py). Nodes keeping the same entries and no
per-node rules share one filter list; autogroup:self extras are one set per user.
"""

from __future__ import annotations

import hashlib
import json
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..model import Node, User
from .aliases import NOTHING, Resolved, resolve
from .carryover import CarryOver
from .errors import PolicyError, Problem
from .filter import COMPANION_CAPS
from .ipset import ALL, AddrSet
from .model import (
    AG_DANGER_ALL,
    AG_INTERNET,
    AG_NONROOT,
    AG_SELF,
    ALL_PORTS,
    AUTOGROUP,
    GROUP,
    HOST,
    USER,
    WILDCARD,
    Acl,
    Alias,
    Grant,
    IpEntry,
    Network,
    Policy,
    PortRange,
)
from .nodefilter import FilterStage
from .ports import protocol_numbers
from .rule import _MAX, Entry, Rule, _Rule, _SelfGrant, _ViaGrant
from .tailnet import Tailnet
from .visibility import VisibilityStage

__all__ = ["CompiledPolicy", "acl_to_grants", "compile_policy"]

_ANY = Alias(WILDCARD, "*")
_DEFAULT_GRANT = Grant((_ANY,), (_ANY,), (IpEntry("", (ALL_PORTS,)),))


def acl_to_grants(acl: Acl) -> list[Grant]:
    """One grant per destination; non-self destinations first unless all are autogroups."""
    if any(d.alias.kind != AUTOGROUP for d in acl.dst):
        ordered = ([d for d in acl.dst if not d.alias.is_autogroup(AG_SELF)]
                   + [d for d in acl.dst if d.alias.is_autogroup(AG_SELF)])
    else:
        ordered = list(acl.dst)
    return [Grant(acl.src, (d.alias,), (IpEntry(acl.proto, d.ports),)) for d in ordered]


class CompiledPolicy(FilterStage, VisibilityStage):
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
        self._resolved: dict[Alias, Resolved] = {}
        self._full: dict[Resolved, AddrSet] = {}
        self._strings: dict[Resolved, list[str]] = {}
        self._entry_node_cache: dict[tuple[int, int], frozenset[int]] = {}
        self._part_cache: dict[Resolved, frozenset[int]] = {}
        self._rules: list[_Rule] = []
        self._self_grants: list[_SelfGrant] = []
        self._via_grants: list[_ViaGrant] = []
        # per-node index of global rules
        # entry ids are (rule index << _EBITS) | entry index, so sorting them keeps rule order
        self._universal: list[int] = []                 # entry ids every node keeps
        self._node_entries: dict[int, list[int]] = defaultdict(list)
        self._cap_universal: list[int] = []             # cap rules every node keeps
        self._node_caps: dict[int, list[int]] = defaultdict(list)
        # visibility
        self._src_groups: dict[frozenset[int], set[int]] = {}
        self._dst_groups: dict[frozenset[int], set[int]] = {}
        self._src_of: dict[int, list[frozenset[int]]] = defaultdict(list)
        self._dst_of: dict[int, list[frozenset[int]]] = defaultdict(list)
        self._universal_peers: set[int] = set()
        self._extra_edges: dict[int, set[int]] = defaultdict(set)
        # lazily filled per node / per user
        self._reduced_cache: dict[tuple[int, tuple[int, ...]], Rule] = {}
        self._np_cache: dict[tuple[str, PortRange], dict[str, Any]] = {}
        self._peer_sets: dict[tuple[Any, ...], frozenset[int]] = {}
        self._set_digests: dict[int, int] = {}          # id(peer base set) -> digest (bases live
                                                        # in _peer_sets, so ids stay unique)
        self._rule_digests: dict[int, tuple[Any, bytes]] = {}   # id(rule) -> (rule, digest)
        self._filters: dict[int, list[Rule]] = {}
        self._self_rules: dict[int, list[_Rule]] = {}
        self._self_src_cache: dict[int, list[tuple[int, ...]]] = {}
        self._via_rules: dict[int, list[_Rule]] = {}
        self._ssh_cache: dict[int, dict[str, Any] | None] = {}
        self._capmaps: dict[int, dict[str, Any]] | None = None
        self._ssh: Any = None
        self._own_cache: dict[tuple[int, tuple[bool, ...]], frozenset[int]] = {}
        self._filter_by_sig: dict[tuple[int, ...], list[Rule]] = {}
        # Results equal to the previous compilation's keep their identity (carryover.py).
        self._carry = CarryOver(previous, len(self.tailnet.nodes))
        self._np_cache = self._carry.np_cache or self._np_cache
        self._rule_tokens: list[tuple[Any, ...] | None] = []
        self._universal_key: tuple[Any, ...] | None = None
        self._filter_keys: dict[int, tuple[Any, ...] | None] = {}
        self._self_keys: dict[int, tuple[Any, ...] | None] = {}
        self._compile()

    # ------------------------------------------------------------------
    # resolution helpers
    def resolve(self, alias: Alias) -> Resolved:
        r = self._resolved.get(alias)
        if r is None:
            r = resolve(alias, self.policy or Policy(), self.tailnet)
            self._resolved[alias] = r
        return r

    def resolve_error(self, alias: Alias) -> bool:
        """Aliases headscale fails to resolve (unknown user/host, per-node autogroups); rules
        skip them where headscale does."""
        t = self.tailnet
        if alias.kind == USER:
            return not t.user_ids(alias.name)
        if alias.kind == GROUP:
            members = (self.policy.groups if self.policy else {}).get(alias.name, ())
            return any(t.user_id(m) is None for m in members)
        if alias.kind == HOST:
            return alias.name not in (self.policy.hosts if self.policy else {})
        if alias.kind == AUTOGROUP:
            return alias.name in (AG_SELF, AG_NONROOT)
        return False

    def full(self, r: Resolved) -> AddrSet:
        """All addresses a resolution covers (identity nodes' IPs plus literal space)."""
        s = self._full.get(r)
        if s is None:
            addrs = self.tailnet.addrs
            ips = AddrSet.of_addrs(a for nid in r.nodes for a in addrs[nid])
            s = ips.union(r.addrs) if r.addrs else ips
            self._full[r] = s
        return s

    def strings(self, r: Resolved) -> list[str]:
        """Wire spelling of a resolution (cached: many rules share their sources)."""
        cached = self._strings.get(r)
        if cached is None:
            cached = self.full(r).strings(self.tailnet.addr_text)
            self._strings[r] = cached
        return cached

    def _owners(self, lo: int, hi: int) -> list[int]:
        t = self.tailnet
        addrs = t.sorted_addrs
        return [t.addr_owner[a] for a in addrs[bisect_left(addrs, lo):bisect_right(addrs, hi)]]

    def _routers(self, lo: int, hi: int) -> set[int]:
        t = self.tailnet
        if not t.router_intervals or not t.route_space.overlaps(lo, hi):
            return set()
        return {nid for rlo, rhi, nid in t.router_intervals if rlo <= hi and lo <= rhi}

    def entry_nodes(self, lo: int, hi: int) -> frozenset[int]:
        """Nodes an address interval names: owners of its addresses and subnet routers
        whose approved routes overlap it."""
        key = (lo, hi)
        cached = self._entry_node_cache.get(key)
        if cached is None:
            if lo == 0 and hi == _MAX:
                cached = self.tailnet.all_nodes
            else:
                cached = frozenset(self._owners(lo, hi)) | self._routers(lo, hi)
            self._entry_node_cache[key] = cached
        return cached

    def nodes_in(self, addrs: AddrSet, *, routes: bool = True, base: Iterable[int] = ()) -> frozenset[int]:
        """Nodes with an address in ``addrs``; with ``routes`` also overlapping subnet routers."""
        out = set(base)
        for lo, hi in addrs.ivs:
            if routes:
                out |= self.entry_nodes(lo, hi)
            else:
                out.update(self._owners(lo, hi))
        return frozenset(out)

    def _source_nodes(self, nodes: frozenset[int], literal: AddrSet, full: AddrSet) -> frozenset[int]:
        """Matcher sources: identity nodes, owners of literal addresses, and subnet routers
        overlapping any of it (a router speaks for its subnets)."""
        out = set(nodes)
        t = self.tailnet
        for lo, hi in literal.ivs:
            out.update(self._owners(lo, hi))
        if t.router_intervals and full.overlaps_set(t.route_space):
            out.update(nid for lo, hi, nid in t.router_intervals if nid not in out and full.overlaps(lo, hi))
        return frozenset(out)

    # ------------------------------------------------------------------
    # compilation
    def _compile(self) -> None:
        p = self.policy
        if self.allow_all:
            self._rules = [_Rule(["*"], ALL, frozenset(), ALL, (), [("*", 0, _MAX, ALL_PORTS)])]
        else:
            assert p is not None
            grants = list(p.grants) if p.has_filter else [_DEFAULT_GRANT]
            for acl in p.acls:
                grants.extend(acl_to_grants(acl))
            raw: list[_Rule] = []
            for g in grants:
                self._compile_grant(g, raw)
            self._rules = _merge(raw)
        self._index_rules()
        self._index_matchers()

    def _sources(self, g: Grant) -> tuple[list[tuple[Alias, Resolved]], Resolved, bool, bool]:
        srcs = [(a, self.resolve(a)) for a in g.src if not (a.kind == HOST and self.resolve_error(a))]
        merged = NOTHING
        for _, r in srcs:
            merged = merged.union(r)
        wildcard = any(a.kind == WILDCARD for a, _ in srcs)
        danger = any(a.is_autogroup(AG_DANGER_ALL) for a, _ in srcs)
        return srcs, merged, wildcard, danger

    def _src_strings(self, merged: Resolved, wildcard: bool, danger: bool,
                     non_wild: list[Resolved] | None) -> list[str]:
        """SrcIPs: "*" sources add each approved subnet route, and keep the addresses of
        explicit sources listed next to them (as Tailscale does)."""
        if not merged:
            return []
        if danger:
            return ["*"]
        out = list(self.strings(merged))
        if wildcard:
            out.extend(self.tailnet.approved_subnet_strings)
            if non_wild:
                seen = set(out)
                for r in non_wild:
                    for text in self.strings(r):
                        if text not in seen:
                            seen.add(text)
                            out.append(text)
        return out

    def _src_sets(self, merged: Resolved, wildcard: bool, danger: bool) -> tuple[AddrSet, AddrSet]:
        """(everything the sources cover, the part not named by node identity)."""
        if danger:
            return ALL, ALL
        literal = merged.addrs
        if wildcard and self.tailnet.subnet_routes:
            literal = literal.union(self.tailnet.route_space)
        full = self.full(merged)
        return (full.union(literal) if literal else full), literal

    def _compile_grant(self, g: Grant, out: list[_Rule]) -> None:
        if g.via:
            self._compile_via(g)
            return
        if any(a.is_autogroup(AG_SELF) for a in g.src):
            return
        srcs, merged, wildcard, danger = self._sources(g)
        if not g.src or not g.dst or (not srcs and g.app is None):
            return
        non_wild = [r for a, r in srcs if a.kind != WILDCARD]
        src_ips = self._src_strings(merged, wildcard, danger, non_wild)
        src, literal = self._src_sets(merged, wildcard, danger) if src_ips else (AddrSet(), AddrSet())
        others = [a for a in g.dst if not a.is_autogroup(AG_SELF)]
        if others:
            parts: list[Resolved | None] = []
            for d in others:
                if d.kind == WILDCARD:
                    parts.append(None)
                elif not (d.kind == HOST and self.resolve_error(d)):
                    parts.append(self.resolve(d))
            for ip in g.ip:
                entries: list[Entry] = []
                for d in others:
                    if d.kind == WILDCARD:
                        entries.extend(("*", 0, _MAX, pr) for pr in ip.ports)
                        continue
                    if d.kind == HOST and self.resolve_error(d):
                        continue
                    r = self.resolve(d)
                    full = self.full(r)
                    # autogroup:internet is always spelled as ranges by Tailscale
                    texts = full.range_strings() if d.is_autogroup(AG_INTERNET) else self.strings(r)
                    for (lo, hi), text in zip(full.ivs, texts):
                        entries.extend((text, lo, hi, pr) for pr in ip.ports)
                if entries and src_ips:
                    out.append(_Rule(src_ips, src, merged.nodes, literal, protocol_numbers(ip.proto), entries,
                                     dst_parts=parts))
            if g.app is not None:
                self._compile_app(g.app, others, srcs, src_ips, src, merged.nodes, literal, out)
        if len(others) != len(g.dst):
            self._self_grants.append(_SelfGrant([r for _, r in srcs], g.ip, g.app))

    def _compile_app(self, app: Mapping[str, Any], others: list[Alias], srcs: list[tuple[Alias, Resolved]],
                     src_ips: list[str], src: AddrSet, src_nodes: frozenset[int], literal: AddrSet,
                     out: list[_Rule]) -> None:
        caps: list[tuple[tuple[Network, ...], Mapping[str, Any]]] = []
        dst_strings: list[str] = []
        for d in others:
            if self.resolve_error(d):
                continue
            r = self.resolve(d)
            caps.append((tuple(self.full(r).prefixes()), app))
            dst_strings.extend(self.strings(r))
        if not caps:
            return
        out.append(_Rule(list(src_ips), src, src_nodes, literal, caps=caps))
        if any(d.kind == WILDCARD for d in others):
            dst_strings.extend(self.tailnet.approved_subnet_strings)
        src_prefixes: list[Network] = []
        for _, r in srcs:
            src_prefixes.extend(self.full(r).prefixes())
        self._companions(app, dst_strings, tuple(src_prefixes), out)

    def _companions(self, app: Mapping[str, Any], dst_strings: list[str],
                    src_prefixes: tuple[Network, ...], out: list[_Rule]) -> None:
        """drive and relay grants also send a capability back from destinations to sources."""
        for original, companion in COMPANION_CAPS:
            if original in app:
                back = AddrSet().union(*(AddrSet.parse(s) for s in dst_strings))
                out.append(_Rule(list(dst_strings), back, frozenset(), back,
                                 caps=[(src_prefixes, {companion: None})]))

    def _compile_via(self, g: Grant) -> None:
        # A via grant without "ip" produces no filter rules but still makes the via routers
        # visible to its sources (captured from Tailscale).
        _, merged, wildcard, danger = self._sources(g)
        if not merged or not self.full(merged):
            return
        dsts: list[Network] = []
        internet = False
        for d in g.dst:
            if d.is_autogroup(AG_INTERNET):
                internet = True
            elif not self.resolve_error(d):
                dsts.extend(self.full(self.resolve(d)).prefixes())
        src, literal = self._src_sets(merged, wildcard, danger)
        self._via_grants.append(_ViaGrant(g.via, self._src_strings(merged, wildcard, danger, None), src,
                                          merged.nodes, literal, dsts, internet, g.ip))


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
                "peers": f"{self._peers_digest(node_id):032x}"}

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

    @property
    def global_rules(self) -> list[_Rule]:
        """The unreduced global rules (used by policy tests and route checks)."""
        return self._rules


def _merge(rules: list[_Rule]) -> list[_Rule]:
    """headscale ``mergeFilterRules`` on unreduced rules: same SrcIPs and IPProto → one rule."""
    out: list[_Rule] = []
    index: dict[tuple[tuple[str, ...], tuple[int, ...]], int] = {}
    for rule in rules:
        if rule.caps is not None:
            out.append(rule)
            continue
        key = (tuple(rule.src_ips), rule.proto)
        at = index.get(key)
        if at is None:
            index[key] = len(out)
            out.append(_Rule(rule.src_ips, rule.src, rule.src_nodes, rule.src_literal, rule.proto,
                             list(rule.entries),
                             dst_parts=list(rule.dst_parts) if rule.dst_parts is not None else None))
        else:
            merged = out[at]
            merged.entries.extend(rule.entries)
            merged.src_nodes = merged.src_nodes | rule.src_nodes
            if merged.dst_parts is not None and rule.dst_parts is not None:
                merged.dst_parts.extend(rule.dst_parts)
            else:
                merged.dst_parts = None
    return out


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
