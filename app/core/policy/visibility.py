"""Visibility stage: which nodes each node may see, from matchers (source nodes, destination
nodes) per rule of the rule index (ruleindex.py), shared per visibility class, plus same-user
and via edges. The last stage of ``CompiledPolicy`` (compile.py).

A node's peers are the destinations of matchers it is a source of plus the sources of
matchers it is a destination of (symmetric), plus same-user (autogroup:self) and via-router
edges. Matchers are indexed when the stage is built; peer sets are built on first use.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from functools import lru_cache
from typing import Any

from .carryover import CarryOver
from .ipset import INTERNET, AddrSet, prefix_interval
from .resolver import AliasResolver
from .rule import _NO_PEERS, _V4_ALL, _V6_ALL, _Rule
from .ruleindex import RuleIndex
from .tailnet import Tailnet


class Visibility:
    """Peers of every node of ``tailnet`` under ``index``'s rules (addresses → nodes through
    ``resolver``). ``carry`` hands out the previous compilation's equal peer sets, so map
    sessions can tell "unchanged" by identity."""

    def __init__(self, tailnet: Tailnet, index: RuleIndex, resolver: AliasResolver,
                 carry: CarryOver | None = None) -> None:
        self.tailnet = tailnet
        self.index = index
        self._resolver = resolver
        self._carry = carry if carry is not None else CarryOver(None, 0)
        self._src_groups: dict[frozenset[int], set[int]] = {}
        self._dst_groups: dict[frozenset[int], set[int]] = {}
        self._src_of: dict[int, list[frozenset[int]]] = defaultdict(list)
        self._dst_of: dict[int, list[frozenset[int]]] = defaultdict(list)
        self._universal_peers: set[int] = set()
        self._extra_edges: dict[int, set[int]] = defaultdict(set)
        # shared results, carried over to the next compilation (carryover.py)
        self.peer_sets: dict[tuple[Any, ...], frozenset[int]] = {}
        self.own_sets: dict[tuple[int, tuple[bool, ...]], frozenset[int]] = {}
        self._set_digests: dict[int, int] = {}      # id(peer base set) -> digest (bases live in
                                                    # peer_sets, so ids stay unique)
        self._index_matchers()

    def _matcher_nodes(self, rule: _Rule) -> tuple[frozenset[int], frozenset[int]]:
        t = self.tailnet
        src = self._resolver.source_nodes(rule.src_nodes, rule.src_literal, rule.src)
        dst: set[int] = set()
        literal = []
        if rule.dst_parts is not None:
            for part in rule.dst_parts:
                if part is None:
                    return src, t.all_nodes
                dst |= self._resolver.part_nodes(part)
                if part.addrs:
                    literal.append(part.addrs)
        else:
            for _, lo, hi, _ in rule.entries:
                dst |= self._resolver.entry_nodes(lo, hi)
            literal.append(AddrSet((lo, hi) for _, lo, hi, _ in rule.entries))
        for dsts, _ in rule.caps or ():
            for d in dsts:
                dst |= self._resolver.entry_nodes(*prefix_interval(d))
            literal.append(AddrSet.of_networks(dsts))
        if t.exit_nodes and not t.exit_nodes <= dst and literal:
            space = AddrSet().union(*literal)
            if space.covers(*_V4_ALL) or space.covers(*_V6_ALL) or INTERNET.issubset(space):
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
        for rule in self.index.rules:
            self._add_matcher(*self._matcher_nodes(rule))
        for key in self._src_groups:
            for nid in key:
                self._src_of[nid].append(key)
        for key in self._dst_groups:
            for nid in key:
                self._dst_of[nid].append(key)
        # A via grant links each router that serves its destinations with the grant's sources
        # (and, when the router is itself a source, with the destinations).
        for vg in self.index.via_grants:
            src = None
            for nid in self.tailnet.tagged_nodes:
                prefixes = self.index.via_prefixes(vg, nid)
                if not prefixes:
                    continue
                if src is None:
                    src = self._resolver.source_nodes(vg.src_nodes, vg.src_literal, vg.src)
                for other in src:
                    self._add_edge(nid, other)
                if nid in src:
                    for other in self._resolver.nodes_in(AddrSet.of_networks(prefixes)):
                        self._add_edge(nid, other)

    def _add_edge(self, a: int, b: int) -> None:
        if a != b:
            self._extra_edges[a].add(b)
            self._extra_edges[b].add(a)

    # ------------------------------------------------------------------
    # visibility
    def peers(self, node_id: int) -> frozenset[int]:
        """Ids of the nodes ``node_id`` may see (either side may reach the other).

        The bulk comes from a set shared by all nodes with the same matcher memberships;
        the per-node result adds same-user and via edges and drops the node itself. It is
        rebuilt on each call rather than kept, so thousands of nodes do not each hold a
        near-identical copy."""
        if node_id not in self.tailnet.nodes:
            raise KeyError(node_id)
        base = self._peer_base(node_id)
        own = self._own_edges(node_id)
        return (base | own) - {node_id} if own else base - {node_id}

    def peer_view(self, node_id: int) -> tuple[frozenset[int], frozenset[int]]:
        """``peers(node_id)`` as (base shared by its visibility class, own extra edges): the
        node sees (base | extra) - {node_id}. Callers hold the shared base, not a copy."""
        if node_id not in self.tailnet.nodes:
            raise KeyError(node_id)
        return self._peer_base(node_id), self._own_edges(node_id)

    def _peer_base(self, node_id: int) -> frozenset[int]:
        """Peers from the global matchers, shared by nodes in the same matcher groups."""
        src_keys = self._src_of.get(node_id, ())
        dst_keys = self._dst_of.get(node_id, ())
        sig = (tuple(map(id, src_keys)), tuple(map(id, dst_keys)))
        base = self.peer_sets.get(sig)
        if base is None:
            out = set(self._universal_peers)
            for key in src_keys:
                out |= self._src_groups[key]
            for key in dst_keys:
                out |= self._dst_groups[key]
            base = self.peer_sets[sig] = self._carry.set(frozenset(out))
        return base

    def _own_edges(self, node_id: int) -> frozenset[int]:
        """Peers particular to the node: same-user devices via autogroup:self, via routers.

        The autogroup:self part is one set per user and position (which of the user's self
        grants the node is a source of), shared by the user's nodes in that position."""
        via = self._extra_edges.get(node_id)
        uid = self.tailnet.owner_of(node_id) if self.index.self_grants else None
        if uid is None:
            return frozenset(via) if via else _NO_PEERS
        sources = self.index.self_sources(uid)
        key = (uid, tuple(node_id in srcs for srcs in sources))
        shared = self.own_sets.get(key)
        if shared is None:
            out: set[int] = set()
            for srcs in sources:
                if srcs:
                    out.update(srcs)
                    if node_id in srcs:
                        out.update(self.tailnet.user_nodes(uid))
            shared = self.own_sets[key] = self._carry.set(frozenset(out)) if out else _NO_PEERS
        return shared | via if via else shared

    def peers_digest(self, node_id: int) -> int:
        """Order-independent hash of ``peers(node_id)`` built from the shared base set's."""
        base = self._peer_base(node_id)
        d = self._set_digests.get(id(base))
        if d is None:
            d = sum(map(_element_hash, base)) % _MOD
            self._set_digests[id(base)] = d
        if node_id in base:
            d -= _element_hash(node_id)
        for other in self._own_edges(node_id):
            if other not in base and other != node_id:
                d += _element_hash(other)
        return d % _MOD


_MOD = 1 << 128


@lru_cache(maxsize=1 << 20)
def _element_hash(value: int) -> int:
    return int.from_bytes(hashlib.blake2b(value.to_bytes(8, "little", signed=True), digest_size=16).digest(),
                          "little")
