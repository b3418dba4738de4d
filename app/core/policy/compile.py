"""Policy + users + nodes → ``CompiledPolicy`` (per-node filters, SSH, caps, peers, routes).

Compilation follows headscale's ``policy/v2`` pipeline (PROTOCOL.md §5.4-5.5):

1. ACLs become grants (one per destination; non-``autogroup:self`` ones first).
2. Each grant's sources resolve once; regular destinations become *global* rules, which are
   merged by (SrcIPs, IPProto). ``autogroup:self`` and ``via`` destinations are kept as
   per-user / per-router data instead.
3. Global rules are indexed by the nodes that keep each destination entry after per-node
   reduction (its addresses, its approved subnet routes, or "the internet" for exit nodes),
   so a node's filter costs the size of its own filter, not the size of the policy.
4. Visibility uses one matcher (source nodes, destination nodes) per rule; a node's peers
   are the union of the destination sets of matchers it is a source of and the source sets
   of matchers it is a destination of (symmetric), plus same-user and via-router edges.

Per-node results are computed on first use and cached; the object is immutable from the
outside, so a new policy or node set means a new ``CompiledPolicy``.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..model import Node, User
from .aliases import NOTHING, Resolved, resolve
from .errors import PolicyError, Problem
from .filter import ALLOW_ALL, COMPANION_CAPS, merge_rules, net_port
from .ipset import ALL, INTERNET, V6_BASE, AddrSet, addr_to_int, network_str, prefix_interval
from .model import (AG_DANGER_ALL, AG_INTERNET, AG_NONROOT, AG_SELF, AUTOGROUP, GROUP, HOST,
                    USER, WILDCARD, ALL_PORTS, Acl, Alias, Grant, IpEntry, Network, Policy,
                    PortRange)
from .ports import protocol_numbers
from .tailnet import Tailnet

__all__ = ["CompiledPolicy", "compile_policy", "acl_to_grants"]

_ANY = Alias(WILDCARD, "*")
_DEFAULT_GRANT = Grant((_ANY,), (_ANY,), (IpEntry("", (ALL_PORTS,)),))

Rule = dict[str, Any]
_V4_ALL = (0, V6_BASE - 1)
_V6_ALL = (V6_BASE, V6_BASE + (1 << 128) - 1)


def acl_to_grants(acl: Acl) -> list[Grant]:
    """One grant per destination; non-self destinations first unless all are autogroups."""
    def grant(entry) -> Grant:
        return Grant(acl.src, (entry.alias,), (IpEntry(acl.proto, entry.ports),))

    if any(d.alias.kind != AUTOGROUP for d in acl.dst):
        ordered = ([d for d in acl.dst if not d.alias.is_autogroup(AG_SELF)]
                   + [d for d in acl.dst if d.alias.is_autogroup(AG_SELF)])
    else:
        ordered = list(acl.dst)
    return [grant(d) for d in ordered]


@dataclass(slots=True)
class _Rule:
    """An unreduced filter rule plus the address sets needed to reduce and match it."""

    src_ips: list[str]
    src: AddrSet                                    # what SrcIPs covers
    src_nodes: frozenset[int]                       # identity part of the sources
    proto: tuple[int, ...] = ()
    entries: list[tuple[str, AddrSet, PortRange]] = field(default_factory=list)
    caps: list[tuple[tuple[Network, ...], Mapping[str, Any]]] | None = None

    def dst_set(self) -> AddrSet:
        sets = [e[1] for e in self.entries]
        if self.caps:
            sets.extend(AddrSet.of_networks(dsts) for dsts, _ in self.caps)
        return AddrSet().union(*sets) if sets else AddrSet()


@dataclass(slots=True)
class _SelfGrant:
    srcs: list[Resolved]
    ip: tuple[IpEntry, ...]
    app: Mapping[str, Any] | None


@dataclass(slots=True)
class _ViaGrant:
    tags: tuple[str, ...]
    src_ips: list[str]
    src: AddrSet
    src_nodes: frozenset[int]
    dsts: list[Network]
    internet: bool
    ip: tuple[IpEntry, ...]
    viewer_nodes: frozenset[int] = frozenset()


class CompiledPolicy:
    """Everything a map response needs from the policy, per node (see module docstring)."""

    def __init__(self, policy: Policy | None, users: Sequence[User], nodes: Sequence[Node], *,
                 server_url: str = "") -> None:
        self.policy = policy
        self.server_url = server_url.rstrip("/")
        self.tailnet = Tailnet(users, nodes)
        self._resolved: dict[Alias, Resolved] = {}
        self._full: dict[Resolved, AddrSet] = {}
        # No policy at all: the literal allow-all filter. A policy without "acls"/"grants"
        # behaves like Tailscale's default grant (* -> *:*) instead, see _compile.
        self.allow_all = policy is None
        # global rules and their per-node index
        self._rules: list[_Rule] = []
        self._self_grants: list[_SelfGrant] = []
        self._via_grants: list[_ViaGrant] = []
        self._entry_ids: list[tuple[int, int]] = []     # entry id -> (rule index, entry index)
        self._universal: list[int] = []                 # entry ids every node keeps
        self._node_entries: dict[int, list[int]] = defaultdict(list)
        self._cap_universal: list[int] = []             # rule indices of cap rules for every node
        self._node_caps: dict[int, list[int]] = defaultdict(list)
        # visibility
        self._src_groups: dict[frozenset[int], set[int]] = {}
        self._dst_groups: dict[frozenset[int], set[int]] = {}
        self._src_of: dict[int, list[frozenset[int]]] = defaultdict(list)
        self._dst_of: dict[int, list[frozenset[int]]] = defaultdict(list)
        self._universal_peers: set[int] = set()
        self._extra_edges: dict[int, set[int]] = defaultdict(set)
        # caches
        self._reduced_cache: dict[tuple[int, tuple[int, ...]], Rule] = {}
        self._filters: dict[int, list[Rule]] = {}
        self._peers: dict[int, frozenset[int]] = {}
        self._self_rules: dict[int, list[_Rule]] = {}
        self._via_rules: dict[int, list[_Rule]] = {}
        self._ssh_cache: dict[int, dict[str, Any] | None] = {}
        self._capmaps: dict[int, dict[str, Any]] | None = None
        self._ssh = None
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
        """Aliases headscale fails to resolve (unknown user/host, per-node autogroups)."""
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
            ips = [a for nid in r.nodes for a in addrs[nid]]
            s = AddrSet.of_addrs(ips).union(r.addrs) if r.addrs else AddrSet.of_addrs(ips)
            self._full[r] = s
        return s

    def nodes_in(self, addrs: AddrSet, *, routes: bool = True, base: Iterable[int] = ()) -> frozenset[int]:
        """Nodes with an address in ``addrs``; with ``routes`` also subnet routers overlapping it."""
        t = self.tailnet
        out = set(base)
        if addrs:
            owner = t.addr_owner
            out.update(owner[a] for a in addrs.addrs_between(t.sorted_addrs))
            if routes:
                for lo, hi, nid in t.router_intervals:
                    if nid not in out and addrs.overlaps(lo, hi):
                        out.add(nid)
        return frozenset(out)

    # ------------------------------------------------------------------
    # compilation
    def _compile(self) -> None:
        p = self.policy
        if self.allow_all:
            rule = _Rule(["*"], ALL, frozenset(), (), [("*", ALL, (0, 65535))])
            self._rules = [rule]
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

    def _src_strings(self, merged: Resolved, wildcard: bool, danger: bool,
                     non_wild: list[Resolved] | None) -> list[str]:
        if not merged:
            return []
        if danger:
            return ["*"]
        out = self.full(merged).strings()
        if wildcard:
            out.extend(self.tailnet.approved_subnet_strings)
            if non_wild:
                seen = set(out)
                for r in non_wild:
                    for s in self.full(r).strings():
                        if s not in seen:
                            seen.add(s)
                            out.append(s)
        return out

    def _src_set(self, merged: Resolved, wildcard: bool, danger: bool) -> AddrSet:
        if danger:
            return ALL
        s = self.full(merged)
        if wildcard and self.tailnet.subnet_routes:
            s = s.union(AddrSet.of_networks(r for rs in self.tailnet.subnet_routes.values() for r in rs))
        return s

    def _compile_grant(self, g: Grant, out: list[_Rule]) -> None:
        if g.via:
            self._compile_via(g)
            return
        if any(a.is_autogroup(AG_SELF) for a in g.src):
            return
        srcs = [(a, self.resolve(a)) for a in g.src if not (a.kind == HOST and self.resolve_error(a))]
        if not g.src or not g.dst or (not srcs and g.app is None):
            return
        wildcard = any(a.kind == WILDCARD for a, _ in srcs)
        danger = any(a.is_autogroup(AG_DANGER_ALL) for a, _ in srcs)
        merged = NOTHING
        for _, r in srcs:
            merged = merged.union(r)
        non_wild = [r for a, r in srcs if a.kind != WILDCARD]
        src_ips = self._src_strings(merged, wildcard, danger, non_wild)
        src_set = self._src_set(merged, wildcard, danger) if src_ips else AddrSet()
        src_nodes = merged.nodes
        others = [a for a in g.dst if not a.is_autogroup(AG_SELF)]
        if others:
            for ip in g.ip:
                entries: list[tuple[str, AddrSet, PortRange]] = []
                for d in others:
                    if d.kind == WILDCARD:
                        entries.extend(("*", ALL, pr) for pr in ip.ports)
                        continue
                    if d.kind == HOST and self.resolve_error(d):
                        continue
                    full = self.full(self.resolve(d))
                    texts = full.range_strings() if d.is_autogroup(AG_INTERNET) else full.strings()
                    for (lo, hi), text in zip(full.ivs, texts):
                        one = AddrSet([(lo, hi)], _normalised=True)
                        entries.extend((text, one, pr) for pr in ip.ports)
                if entries and src_ips:
                    out.append(_Rule(src_ips, src_set, src_nodes, protocol_numbers(ip.proto), entries))
            if g.app is not None:
                self._compile_app(g, others, srcs, src_ips, src_set, src_nodes, out)
        if len(others) != len(g.dst):
            self._self_grants.append(_SelfGrant([r for _, r in srcs], g.ip, g.app))

    def _compile_app(self, g: Grant, others: list[Alias], srcs: list[tuple[Alias, Resolved]],
                     src_ips: list[str], src_set: AddrSet, src_nodes: frozenset[int],
                     out: list[_Rule]) -> None:
        caps: list[tuple[tuple[Network, ...], Mapping[str, Any]]] = []
        dst_strings: list[str] = []
        for d in others:
            if self.resolve_error(d):
                continue
            full = self.full(self.resolve(d))
            caps.append((tuple(full.prefixes()), g.app))
            dst_strings.extend(full.strings())
        if not caps:
            return
        out.append(_Rule(list(src_ips), src_set, src_nodes, caps=caps))
        if any(d.kind == WILDCARD for d in others):
            dst_strings.extend(self.tailnet.approved_subnet_strings)
        src_prefixes: list[Network] = []
        for _, r in srcs:
            src_prefixes.extend(self.full(r).prefixes())
        self._companions(g.app, dst_strings, tuple(src_prefixes), out)

    def _companions(self, app: Mapping[str, Any], dst_strings: list[str],
                    src_prefixes: tuple[Network, ...], out: list[_Rule]) -> None:
        for original, companion in COMPANION_CAPS:
            if original in app:
                back = AddrSet().union(*(AddrSet.parse(s) for s in dst_strings)) if dst_strings else AddrSet()
                out.append(_Rule(list(dst_strings), back, frozenset(),
                                 caps=[(src_prefixes, {companion: None})]))

    def _compile_via(self, g: Grant) -> None:
        # A via grant without "ip" produces no filter rules but still makes the via routers
        # visible to its sources (captured from Tailscale).
        srcs = [(a, self.resolve(a)) for a in g.src if not (a.kind == HOST and self.resolve_error(a))]
        merged = NOTHING
        for _, r in srcs:
            merged = merged.union(r)
        if not merged or not self.full(merged):
            return
        wildcard = any(a.kind == WILDCARD for a, _ in srcs)
        danger = any(a.is_autogroup(AG_DANGER_ALL) for a, _ in srcs)
        dsts: list[Network] = []
        internet = False
        for d in g.dst:
            if d.is_autogroup(AG_INTERNET):
                internet = True
                continue
            if self.resolve_error(d):
                continue
            if d.kind == WILDCARD:
                dsts.extend(self.full(self.resolve(d)).prefixes())
                continue
            dsts.extend(self.full(self.resolve(d)).prefixes())
        src_set = self._src_set(merged, wildcard, danger)
        self._via_grants.append(_ViaGrant(
            g.via, self._src_strings(merged, wildcard, danger, None), src_set, merged.nodes,
            dsts, internet, g.ip,
            viewer_nodes=self.nodes_in(src_set, routes=False, base=merged.nodes)))

    # ------------------------------------------------------------------
    # indexes
    def _keepers(self, s: AddrSet) -> frozenset[int] | None:
        """Nodes whose reduced filter keeps a destination entry; None means every node."""
        t = self.tailnet
        if s is ALL:
            return None
        keep = set(self.nodes_in(s))
        if t.exit_nodes and s.issubset(INTERNET):
            keep |= t.exit_nodes
        return frozenset(keep)

    def _index_rules(self) -> None:
        all_nodes = self.tailnet.all_nodes
        for ri, rule in enumerate(self._rules):
            if rule.caps is not None:
                keep: set[int] = set()
                for dsts, _ in rule.caps:
                    keep |= self.nodes_in(AddrSet.of_networks(dsts))
                if keep == all_nodes:
                    self._cap_universal.append(ri)
                else:
                    for nid in keep:
                        self._node_caps[nid].append(ri)
                continue
            for ei, (_, s, _) in enumerate(rule.entries):
                eid = len(self._entry_ids)
                self._entry_ids.append((ri, ei))
                keepers = self._keepers(s)
                if keepers is None or keepers == all_nodes:
                    self._universal.append(eid)
                else:
                    for nid in keepers:
                        self._node_entries[nid].append(eid)

    def _matcher_nodes(self, rule: _Rule) -> tuple[frozenset[int], frozenset[int]]:
        t = self.tailnet
        src = self.nodes_in(rule.src, base=rule.src_nodes)
        dst_set = rule.dst_set()
        dst = set(self.nodes_in(dst_set))
        if t.exit_nodes and (dst_set.covers(*_V4_ALL) or dst_set.covers(*_V6_ALL)
                             or INTERNET.issubset(dst_set)):
            dst |= t.exit_nodes
        return src, frozenset(dst)

    def _add_matcher(self, src: frozenset[int], dst: frozenset[int]) -> None:
        if not src or not dst:
            return
        all_nodes = self.tailnet.all_nodes
        if src == all_nodes:
            self._universal_peers |= dst
        else:
            self._src_groups.setdefault(src, set()).update(dst)
        if dst == all_nodes:
            self._universal_peers |= src
        else:
            self._dst_groups.setdefault(dst, set()).update(src)

    def _index_matchers(self) -> None:
        for rule in self._rules:
            self._add_matcher(*self._matcher_nodes(rule))
        for key in list(self._src_groups):
            for nid in key:
                self._src_of[nid].append(key)
        for key in list(self._dst_groups):
            for nid in key:
                self._dst_of[nid].append(key)
        # via routers: a via grant links each router that serves its destinations with the
        # grant's sources (and, when the router is itself a source, with the destinations)
        for vg in self._via_grants:
            src = None
            for nid in self.tailnet.tagged_nodes:
                prefixes = self._via_prefixes(vg, nid)
                if not prefixes:
                    continue
                if src is None:
                    src = self.nodes_in(vg.src, base=vg.src_nodes)
                dst = set(self.nodes_in(AddrSet.of_networks(prefixes)))
                for other in src:
                    self._add_edge(nid, other)
                if nid in src:
                    for other in dst:
                        self._add_edge(nid, other)

    def _add_edge(self, a: int, b: int) -> None:
        if a != b:
            self._extra_edges[a].add(b)
            self._extra_edges[b].add(a)

    # ------------------------------------------------------------------
    # per-node packet filter
    def filter_rules(self, node_id: int) -> list[Rule]:
        """The node's reduced ``PacketFilter`` (wire JSON); cached, treat as read-only."""
        cached = self._filters.get(node_id)
        if cached is not None:
            return cached
        if node_id not in self.tailnet.nodes:
            raise KeyError(node_id)
        if self.allow_all:
            out = ALLOW_ALL
        else:
            out = self._build_filter(node_id)
        self._filters[node_id] = out
        return out

    def _build_filter(self, nid: int) -> list[Rule]:
        kept: dict[int, list[int]] = defaultdict(list)
        entry_ids = self._universal + self._node_entries.get(nid, [])
        for eid in sorted(entry_ids):
            ri, ei = self._entry_ids[eid]
            kept[ri].append(ei)
        cap_rules = self._cap_universal + self._node_caps.get(nid, [])
        out: list[Rule] = []
        for ri in sorted(set(kept) | set(cap_rules)):
            rule = self._rules[ri]
            if rule.caps is not None:
                reduced = self._reduce_caps(nid, rule)
                if reduced is not None:
                    out.append(reduced)
                continue
            key = (ri, tuple(kept[ri]))
            r = self._reduced_cache.get(key)
            if r is None:
                r = _wire(rule, [rule.entries[i] for i in kept[ri]])
                self._reduced_cache[key] = r
            out.append(r)
        extra = self.self_rules_for(nid) + self.via_rules(nid)
        if extra:
            for rule in extra:
                reduced = self._reduce(nid, rule)
                if reduced is not None:
                    out.append(reduced)
            out = merge_rules(out)
        return out

    def _reduce(self, nid: int, rule: _Rule) -> Rule | None:
        if rule.caps is not None:
            return self._reduce_caps(nid, rule)
        t = self.tailnet
        addrs = t.addrs[nid]
        routes = [prefix_interval(r) for r in t.subnet_routes.get(nid, ())]
        is_exit = nid in t.exit_nodes
        kept = [e for e in rule.entries
                if e[1].contains_any(addrs) or any(e[1].overlaps(lo, hi) for lo, hi in routes)
                or (is_exit and e[1].issubset(INTERNET))]
        return _wire(rule, kept) if kept else None

    def _reduce_caps(self, nid: int, rule: _Rule) -> Rule | None:
        t = self.tailnet
        addrs = t.addrs[nid]
        node = t.nodes[nid]
        ips = [ip for ip in (node.ipv4, node.ipv6) if ip]
        routes = t.subnet_routes.get(nid, ())
        grants = []
        assert rule.caps is not None
        for dsts, capmap in rule.caps:
            match: set[tuple[int, int, int, str]] = set()
            for d in dsts:
                lo, hi = prefix_interval(d)
                if d.prefixlen == d.max_prefixlen:
                    if lo in addrs:
                        match.add((d.version, d.prefixlen, lo, network_str(d)))
                    continue
                for a, ip in zip(addrs, ips):
                    if lo <= a <= hi:
                        bits = 32 if a < V6_BASE else 128
                        match.add((4 if bits == 32 else 6, bits, a, f"{ip}/{bits}"))
            for d in dsts:
                for r in routes:
                    if d.overlaps(r) if d.version == r.version else False:
                        lo, _ = prefix_interval(d)
                        match.add((d.version, d.prefixlen, lo, network_str(d)))
            if match:
                grants.append({"Dsts": [m[3] for m in sorted(match)], "CapMap": _capmap_json(capmap)})
        if not grants:
            return None
        return {"SrcIPs": list(rule.src_ips), "CapGrant": grants}

    # --- autogroup:self, per user -------------------------------------------
    def self_rules_for(self, nid: int) -> list[_Rule]:
        if not self._self_grants:
            return []
        uid = self.tailnet.owner_of(nid)
        if uid is None:
            return []
        rules = self._self_rules.get(uid)
        if rules is None:
            rules = self._build_self_rules(uid)
            self._self_rules[uid] = rules
        return rules

    def _self_sources(self, sg: _SelfGrant, same_user: list[int]) -> list[int]:
        t = self.tailnet
        picked = []
        for nid in same_user:
            if any(nid in r.nodes or (r.addrs and r.addrs.contains_any(t.addrs[nid])) for r in sg.srcs):
                picked.append(nid)
        return picked

    def _user_nodes_ordered(self, uid: int) -> list[int]:
        members = self.tailnet.user_nodes(uid)
        return [n for n in self.tailnet.order if n in members]

    def _build_self_rules(self, uid: int) -> list[_Rule]:
        t = self.tailnet
        same_user = self._user_nodes_ordered(uid)
        out: list[_Rule] = []
        for sg in self._self_grants:
            src_nodes = self._self_sources(sg, same_user)
            if not src_nodes:
                continue
            src_set = AddrSet.of_addrs(a for n in src_nodes for a in t.addrs[n])
            src_ips = src_set.strings()
            for ip in sg.ip:
                entries = []
                for n in same_user:
                    for pr in ip.ports:
                        for text, a in zip(t.node_ip_strings(n), t.addrs[n]):
                            entries.append((text, AddrSet([(a, a)], _normalised=True), pr))
                if entries:
                    out.append(_Rule(src_ips, src_set, frozenset(src_nodes), protocol_numbers(ip.proto),
                                     entries))
            if sg.app is not None:
                caps = []
                dst_strings = []
                for n in same_user:
                    nets = tuple(_host_net(ip) for ip in t.node_ip_strings(n))
                    dst_strings.extend(t.node_ip_strings(n))
                    caps.append((nets, sg.app))
                if caps:
                    out.append(_Rule(list(src_ips), src_set, frozenset(src_nodes), caps=caps))
                    self._companions(sg.app, dst_strings, tuple(src_set.prefixes()), out)
        return out

    # --- via routers ----------------------------------------------------------
    def _via_prefixes(self, vg: _ViaGrant, nid: int) -> list[Network]:
        """The grant's destinations this via router serves (overlapping its routes)."""
        t = self.tailnet
        if not any(tag in t.nodes[nid].tags for tag in vg.tags):
            return []
        routes = t.subnet_routes.get(nid, ())
        prefixes = [d for d in vg.dsts if any(d.version == r.version and d.overlaps(r) for r in routes)]
        if vg.internet and nid in t.exit_nodes:
            prefixes.extend(INTERNET.prefixes())
        return prefixes

    def via_rules(self, nid: int) -> list[_Rule]:
        if not self._via_grants:
            return []
        rules = self._via_rules.get(nid)
        if rules is not None:
            return rules
        rules = []
        for vg in self._via_grants:
            prefixes = self._via_prefixes(vg, nid)
            for ip in vg.ip if prefixes else ():
                entries = [(network_str(pf), AddrSet.of_networks([pf]), pr) for pf in prefixes for pr in ip.ports]
                rules.append(_Rule(vg.src_ips, vg.src, vg.src_nodes, protocol_numbers(ip.proto), entries))
        self._via_rules[nid] = rules
        return rules

    # ------------------------------------------------------------------
    # visibility
    def peers(self, node_id: int) -> frozenset[int]:
        """Ids of the nodes ``node_id`` may see (either side may reach the other)."""
        cached = self._peers.get(node_id)
        if cached is not None:
            return cached
        if node_id not in self.tailnet.nodes:
            raise KeyError(node_id)
        out = set(self._universal_peers)
        for key in self._src_of.get(node_id, ()):
            out |= self._src_groups[key]
        for key in self._dst_of.get(node_id, ()):
            out |= self._dst_groups[key]
        out |= self._extra_edges.get(node_id, set())
        uid = self.tailnet.owner_of(node_id)
        if uid is not None and self._self_grants:
            out |= self._self_peers(uid, node_id)
        out.discard(node_id)
        result = frozenset(out)
        self._peers[node_id] = result
        return result

    def _self_peers(self, uid: int, nid: int) -> set[int]:
        same_user = self._user_nodes_ordered(uid)
        out: set[int] = set()
        for sg in self._self_grants:
            srcs = self._self_sources(sg, same_user)
            if not srcs:
                continue
            out.update(srcs)
            if nid in srcs:
                out.update(same_user)
        return out

    # ------------------------------------------------------------------
    # SSH, capabilities, routes, tags
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

    def ssh_policy_with_url(self, node_id: int, server_url: str) -> dict[str, Any] | None:
        from .ssh import SshCompiler
        if self.policy is None or not self.policy.ssh:
            return None
        return {"rules": SshCompiler(self, server_url).rules_for(node_id)}

    def cap_map(self, node_id: int) -> dict[str, Any]:
        """CapMap entries the policy adds to the node's self view (nodeAttrs, randomizeClientPort)."""
        if self._capmaps is None:
            self._capmaps = self._build_capmaps()
        if node_id not in self.tailnet.nodes:
            raise KeyError(node_id)
        return self._capmaps.get(node_id, {})

    def _build_capmaps(self) -> dict[int, dict[str, Any]]:
        out: dict[int, dict[str, Any]] = defaultdict(dict)
        p = self.policy
        if p is None:
            return {}
        if p.randomize_client_port:
            for nid in self.tailnet.nodes:
                out[nid].setdefault("randomize-client-port", None)
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
        """A short hash of everything this object produces for the node, for change detection."""
        blob = json.dumps([self.filter_rules(node_id), self.ssh_policy(node_id), self.cap_map(node_id),
                           sorted(self.peers(node_id))], sort_keys=True, separators=(",", ":"))
        return hashlib.blake2b(blob.encode(), digest_size=16).hexdigest()

    # routes, tags: see routes.py
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

    # --- for tests.py -------------------------------------------------------
    @property
    def global_rules(self) -> list[_Rule]:
        return self._rules


def _merge(rules: list[_Rule]) -> list[_Rule]:
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
            out.append(_Rule(rule.src_ips, rule.src, rule.src_nodes, rule.proto, list(rule.entries)))
        else:
            merged = out[at]
            merged.entries.extend(rule.entries)
            merged.src_nodes = merged.src_nodes | rule.src_nodes
    return out


def _wire(rule: _Rule, entries: list[tuple[str, AddrSet, PortRange]]) -> Rule:
    out: Rule = {"SrcIPs": list(rule.src_ips), "DstPorts": [net_port(text, pr) for text, _, pr in entries]}
    if rule.proto:
        out["IPProto"] = list(rule.proto)
    return out


def _capmap_json(capmap: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (list(v) if v is not None else None) for k, v in capmap.items()}


def _host_net(ip: str) -> Network:
    import ipaddress
    a = ipaddress.ip_address(ip)
    return ipaddress.ip_network((a, a.max_prefixlen))


def compile_policy(policy: Policy | None, users: Sequence[User], nodes: Sequence[Node], *,
                   server_url: str = "", run_tests: bool = True) -> CompiledPolicy:
    """Compile for these users and nodes; with ``run_tests`` the policy's ``tests`` and
    ``sshTests`` run and a failure raises ``PolicyError``."""
    compiled = CompiledPolicy(policy, users, nodes, server_url=server_url)
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
