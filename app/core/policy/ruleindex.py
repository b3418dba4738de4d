"""Rule index stage: compiled rules (grants.py) indexed by the nodes that keep them, so a
node's filter costs the size of that filter, not of the policy. The third stage of
``CompiledPolicy`` (compile.py); the per-node filter (nodefilter.py) and visibility
(visibility.py) stages read it.

Every destination entry of a global rule is indexed by the nodes that keep it after per-node
reduction: owners of its addresses, subnet routers overlapping it, exit nodes for public
addresses. Entry ids are ``(rule index << _EBITS) | entry index``, so sorting them keeps rule
order. autogroup:self grants are indexed per user (which of the user's nodes each grant's
sources include), via grants per router (which destinations it serves).
"""

from __future__ import annotations

from collections import defaultdict

from .grants import Rules
from .ipset import INTERNET, prefix_interval
from .model import Network
from .resolver import AliasResolver
from .rule import _EBITS, _Rule, _SelfGrant, _ViaGrant
from .tailnet import Tailnet


class RuleIndex:
    """``rules`` of one policy over ``tailnet`` (addresses → nodes through ``resolver``)."""

    def __init__(self, tailnet: Tailnet, rules: Rules, resolver: AliasResolver) -> None:
        self.tailnet = tailnet
        self.rules: list[_Rule] = rules.rules
        self.self_grants: list[_SelfGrant] = rules.self_grants
        self.via_grants: list[_ViaGrant] = rules.via_grants
        self._resolver = resolver
        self.universal: list[int] = []                  # entry ids every node keeps
        self.node_entries: dict[int, list[int]] = defaultdict(list)
        self.cap_universal: list[int] = []              # cap rules (indices) every node keeps
        self.node_caps: dict[int, list[int]] = defaultdict(list)
        self._self_sources: dict[int, list[tuple[int, ...]]] = {}
        self._index()

    def _keepers(self, lo: int, hi: int) -> frozenset[int] | None:
        """Nodes whose reduced filter keeps an entry; None means every node."""
        keep = self._resolver.entry_nodes(lo, hi)
        t = self.tailnet
        if t.exit_nodes and INTERNET.covers(lo, hi):
            keep = keep | t.exit_nodes
        return None if len(keep) == len(t.all_nodes) else keep

    def _index(self) -> None:
        all_nodes = self.tailnet.all_nodes
        entry_nodes = self._resolver.entry_nodes
        universal, node_entries = self.universal, self.node_entries
        keepers_cache: dict[tuple[int, int], frozenset[int] | None] = {}
        for ri, rule in enumerate(self.rules):
            if rule.caps is not None:
                keep: set[int] = set()
                for dsts, _ in rule.caps:
                    for d in dsts:
                        keep |= entry_nodes(*prefix_interval(d))
                if keep == all_nodes:
                    self.cap_universal.append(ri)
                else:
                    for nid in keep:
                        self.node_caps[nid].append(ri)
                continue
            base = ri << _EBITS
            for ei, (_, lo, hi, _) in enumerate(rule.entries):
                eid = base | ei
                key = (lo, hi)
                if key in keepers_cache:
                    keepers = keepers_cache[key]
                else:
                    keepers = keepers_cache[key] = self._keepers(lo, hi)
                if keepers is None:
                    universal.append(eid)
                else:
                    for nid in keepers:
                        node_entries[nid].append(eid)

    def entries_of(self, nid: int) -> list[tuple[int, int]]:
        """(rule index, entry index) pairs the node keeps, in rule order (for inspection)."""
        mask = (1 << _EBITS) - 1
        return [(eid >> _EBITS, eid & mask) for eid in sorted(self.universal + self.node_entries.get(nid, []))]

    # --- autogroup:self, per user ---------------------------------------------
    def self_sources(self, uid: int) -> list[tuple[int, ...]]:
        """Per self grant: the user's nodes that its sources include (cached per user)."""
        cached = self._self_sources.get(uid)
        if cached is None:
            t = self.tailnet
            same_user = t.user_nodes_ordered(uid)
            cached = [tuple(n for n in same_user
                            if any(n in r.nodes or (r.addrs and r.addrs.contains_any(t.addrs[n]))
                                   for r in sg.srcs))
                      for sg in self.self_grants]
            self._self_sources[uid] = cached
        return cached

    # --- via routers ------------------------------------------------------------
    def via_prefixes(self, vg: _ViaGrant, nid: int) -> list[Network]:
        """The grant's destinations this via router serves (overlapping its routes)."""
        t = self.tailnet
        if not any(tag in t.nodes[nid].tags for tag in vg.tags):
            return []
        routes = t.subnet_routes.get(nid, ())
        prefixes = [d for d in vg.dsts if any(d.version == r.version and d.overlaps(r) for r in routes)]
        if vg.internet and nid in t.exit_nodes:
            prefixes.extend(INTERNET.prefixes())
        return prefixes
