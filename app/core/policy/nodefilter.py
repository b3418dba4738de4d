"""Per-node filter stage: each node's reduced ``PacketFilter`` from the rule index
(ruleindex.py), plus its autogroup:self and via rules. The fourth stage of ``CompiledPolicy``
(compile.py). Everything is built on first use per node and cached; with a ``CarryOver`` a node
whose filter key did not move gets the previous compilation's filter object back."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from .carryover import CarryOver
from .filter import ALLOW_ALL, merge_rules
from .grants import companions
from .ipset import INTERNET, V6_BASE, AddrSet, network_str, prefix_interval
from .ports import protocol_numbers
from .rule import _EBITS, Entry, Rule, _capmap_json, _host_net, _Rule, _wire
from .ruleindex import RuleIndex
from .tailnet import Tailnet


class NodeFilters:
    """Packet filters of ``index``'s rules per node of ``tailnet``. ``allow_all`` (no policy
    at all) gives every node the literal allow-all filter. ``carry`` lends the previous
    compilation's results (carryover.py); without it every filter is built."""

    def __init__(self, tailnet: Tailnet, index: RuleIndex, carry: CarryOver | None = None, *,
                 allow_all: bool = False) -> None:
        self.tailnet = tailnet
        self.index = index
        self.allow_all = allow_all
        self._carry = carry if carry is not None else CarryOver(None, 0)
        self.filters: dict[int, list[Rule]] = {}
        self.np_cache: dict[tuple[str, Any], dict[str, Any]] = self._carry.np_cache or {}
        self._reduced_cache: dict[tuple[int, tuple[int, ...]], Rule] = {}
        self._filter_by_sig: dict[tuple[int, ...], list[Rule]] = {}
        self._self_rules: dict[int, list[_Rule]] = {}
        self._via_rules: dict[int, list[_Rule]] = {}
        # carried over to the next compilation (carryover.py)
        self.rule_tokens: list[tuple[Any, ...] | None] = []
        self.universal_key: tuple[Any, ...] | None = None
        self.filter_keys: dict[int, tuple[Any, ...] | None] = {}
        self.self_keys: dict[int, tuple[Any, ...] | None] = {}

    # ------------------------------------------------------------------
    # per-node packet filter
    def filter_rules(self, node_id: int) -> list[Rule]:
        """The node's reduced ``PacketFilter`` rules (wire JSON); cached, treat as read-only."""
        cached = self.filters.get(node_id)
        if cached is not None:
            return cached
        if node_id not in self.tailnet.nodes:
            raise KeyError(node_id)
        if self.allow_all:
            out = ALLOW_ALL
        else:
            key = self._filter_key(node_id)
            out = self._carry.filter(node_id, key)
            if out is None:
                out = self._carry.equal_filter(node_id, self._build_filter(node_id))
            self.filter_keys[node_id] = key
        self.filters[node_id] = out
        return out

    def _filter_key(self, nid: int) -> tuple[Any, ...] | None:
        """Everything the node's filter is a function of, as interned tokens (carryover.py);
        None when it also depends on capability or via rules (then it is always built)."""
        ix = self.index
        if ix.cap_universal or nid in ix.node_caps or self.via_rules(nid):
            return None
        if self.universal_key is None:
            self._tokenise()
        tok, mask = self.rule_tokens, (1 << _EBITS) - 1
        own = tuple((tok[eid >> _EBITS], eid & mask) for eid in ix.node_entries.get(nid, ()))
        uid = self.tailnet.owner_of(nid) if ix.self_grants else None
        if uid is None:
            return (self.universal_key, own)
        if uid not in self.self_keys:
            rules = self.self_rules_for(nid)
            new = (None if any(r.caps is not None for r in rules) else
                   tuple((tuple(r.src_ips), r.proto, tuple(r.entries)) for r in rules))
            self.self_keys[uid] = self._carry.same(new, self._carry.self_keys.get(uid))
        self_key = self.self_keys[uid]
        if self_key is None:
            return None
        t = self.tailnet
        return (self.universal_key, own, self_key, t.addrs[nid], t.subnet_routes.get(nid), nid in t.exit_nodes)

    def _tokenise(self) -> None:
        self.rule_tokens = [None if r.caps is not None else
                            self._carry.token((tuple(r.src_ips), r.proto, tuple(r.entries)))
                            for r in self.index.rules]
        mask = (1 << _EBITS) - 1
        universal = tuple((self.rule_tokens[eid >> _EBITS], eid & mask) for eid in sorted(self.index.universal))
        self.universal_key = self._carry.same(universal, self._carry.universal_key)

    def _build_filter(self, nid: int) -> list[Rule]:
        ix = self.index
        own = ix.node_entries.get(nid, [])
        if ix.cap_universal or nid in ix.node_caps or self.self_rules_for(nid) or self.via_rules(nid):
            return self._assemble_filter(nid, own)
        # The filter depends only on which entries the node keeps: nodes keeping the same
        # entries share one list (an allow-all style policy: one list for the tailnet).
        sig = tuple(own)
        out = self._filter_by_sig.get(sig)
        if out is None:
            out = self._filter_by_sig[sig] = self._assemble_filter(nid, own)
        return out

    def _assemble_filter(self, nid: int, own: list[int]) -> list[Rule]:
        ix = self.index
        kept: dict[int, list[int]] = defaultdict(list)
        mask = (1 << _EBITS) - 1
        for eid in sorted(ix.universal + own):
            kept[eid >> _EBITS].append(eid & mask)
        out: list[Rule] = []
        for ri in sorted(set(kept) | set(ix.cap_universal) | set(ix.node_caps.get(nid, ()))):
            rule = ix.rules[ri]
            if rule.caps is not None:
                reduced = self._reduce_caps(nid, rule)
                if reduced is not None:
                    out.append(reduced)
                continue
            key = (ri, tuple(kept[ri]))
            wire = self._reduced_cache.get(key)
            if wire is None:
                wire = self._reduced_cache[key] = _wire(rule, [rule.entries[i] for i in kept[ri]], self.np_cache)
            out.append(wire)
        extra = self.self_rules_for(nid) + self.via_rules(nid)
        if extra:
            out.extend(r for r in (self._reduce(nid, rule) for rule in extra) if r is not None)
            out = merge_rules(out)
        return out

    def _reduce(self, nid: int, rule: _Rule) -> Rule | None:
        """headscale ``ReduceFilterRules`` for one rule and one node."""
        if rule.caps is not None:
            return self._reduce_caps(nid, rule)
        t = self.tailnet
        addrs = t.addrs[nid]
        routes = [prefix_interval(r) for r in t.subnet_routes.get(nid, ())]
        is_exit = nid in t.exit_nodes
        if rule.by_node is not None and not routes and not is_exit:
            kept = [rule.entries[i] for i in rule.by_node.get(nid, ())]
        else:
            kept = [e for e in rule.entries
                    if any(e[1] <= a <= e[2] for a in addrs)
                    or any(lo <= e[2] and e[1] <= hi for lo, hi in routes)
                    or (is_exit and INTERNET.covers(e[1], e[2]))]
        return _wire(rule, kept, self.np_cache) if kept else None

    def _reduce_caps(self, nid: int, rule: _Rule) -> Rule | None:
        """Capability grants narrowed to the node: its own /32 and /128 inside broad
        destinations, plus destinations overlapping its approved subnet routes."""
        t = self.tailnet
        addrs = t.addrs[nid]
        texts = t.node_ip_strings(nid)
        routes = t.subnet_routes.get(nid, ())
        grants = []
        for dsts, capmap in rule.caps or ():
            match: set[tuple[int, int, int, str]] = set()
            for d in dsts:
                lo, hi = prefix_interval(d)
                if d.prefixlen == d.max_prefixlen:
                    if lo in addrs:
                        match.add((d.version, d.prefixlen, lo, network_str(d)))
                    continue
                for a, ip in zip(addrs, texts):
                    if lo <= a <= hi:
                        v4 = a < V6_BASE
                        match.add((4 if v4 else 6, 32 if v4 else 128, a, f"{ip}/{32 if v4 else 128}"))
                for r in routes:
                    if d.version == r.version and d.overlaps(r):
                        match.add((d.version, d.prefixlen, lo, network_str(d)))
            if match:
                grants.append({"Dsts": [m[3] for m in sorted(match)], "CapMap": _capmap_json(capmap)})
        if not grants:
            return None
        return {"SrcIPs": rule.src_ips, "CapGrant": grants}

    # --- autogroup:self, per user -------------------------------------------
    def self_rules_for(self, nid: int) -> list[_Rule]:
        if not self.index.self_grants:
            return []
        uid = self.tailnet.owner_of(nid)
        if uid is None:
            return []
        rules = self._self_rules.get(uid)
        if rules is None:
            rules = self._self_rules[uid] = self._build_self_rules(uid)
        return rules

    def _build_self_rules(self, uid: int) -> list[_Rule]:
        """autogroup:self for one user: sources limited to the user's own untagged devices,
        destinations all of them (headscale ``compileAutogroupSelf``)."""
        t = self.tailnet
        same_user = t.user_nodes_ordered(uid)
        out: list[_Rule] = []
        for sg, src_nodes in zip(self.index.self_grants, self.index.self_sources(uid)):
            if not src_nodes:
                continue
            src = AddrSet.of_addrs(a for n in src_nodes for a in t.addrs[n])
            src_ips = src.strings(t.addr_text)
            for ip in sg.ip:
                entries: list[Entry] = []
                by_node: dict[int, list[int]] = {}
                for n in same_user:
                    for pr in ip.ports:
                        for a in t.addrs[n]:
                            by_node.setdefault(n, []).append(len(entries))
                            entries.append((t.addr_text[a], a, a, pr))
                if entries:
                    out.append(_Rule(src_ips, src, frozenset(src_nodes), AddrSet(),
                                     protocol_numbers(ip.proto), entries, by_node=by_node))
            if sg.app is not None:
                caps = [(tuple(_host_net(ip) for ip in t.node_ip_strings(n)), sg.app) for n in same_user]
                dst_strings = [ip for n in same_user for ip in t.node_ip_strings(n)]
                out.append(_Rule(list(src_ips), src, frozenset(src_nodes), AddrSet(), caps=caps))
                companions(sg.app, dst_strings, tuple(src.prefixes()), out)
        return out

    # --- via routers ----------------------------------------------------------
    def via_rules(self, nid: int) -> list[_Rule]:
        if not self.index.via_grants:
            return []
        rules = self._via_rules.get(nid)
        if rules is None:
            rules = []
            for vg in self.index.via_grants:
                prefixes = self.index.via_prefixes(vg, nid)
                for ip in vg.ip if prefixes else ():
                    entries = [(network_str(pf), *prefix_interval(pf), pr) for pf in prefixes for pr in ip.ports]
                    rules.append(_Rule(vg.src_ips, vg.src, vg.src_nodes, vg.src_literal,
                                       protocol_numbers(ip.proto), entries))
            self._via_rules[nid] = rules
        return rules
