"""Alias resolution stage: aliases of one policy against one tailnet → ``Resolved`` (node ids
plus literal address space), their full address sets and wire spellings, and the nodes an
address interval names. The first stage of ``CompiledPolicy`` (compile.py); every later stage
reads aliases through it, so each alias resolves once per compilation."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable

from .aliases import Resolved, resolve
from .ipset import AddrSet
from .model import AG_NONROOT, AG_SELF, AUTOGROUP, GROUP, HOST, USER, Alias, Policy
from .rule import _MAX
from .tailnet import Tailnet


class AliasResolver:
    """Resolves the aliases of ``policy`` (None: no policy) against ``tailnet``; results are
    cached and shared, treat them as read-only."""

    def __init__(self, policy: Policy | None, tailnet: Tailnet) -> None:
        self.policy = policy
        self.tailnet = tailnet
        self._policy = policy or Policy()
        self._resolved: dict[Alias, Resolved] = {}
        self._full: dict[Resolved, AddrSet] = {}
        self._strings: dict[Resolved, list[str]] = {}
        self._entry_nodes: dict[tuple[int, int], frozenset[int]] = {}
        self._part_nodes: dict[Resolved, frozenset[int]] = {}

    def resolve(self, alias: Alias) -> Resolved:
        r = self._resolved.get(alias)
        if r is None:
            r = self._resolved[alias] = resolve(alias, self._policy, self.tailnet)
        return r

    def resolve_error(self, alias: Alias) -> bool:
        """Aliases headscale fails to resolve (unknown user/host, per-node autogroups); rules
        skip them where headscale does."""
        t = self.tailnet
        if alias.kind == USER:
            return not t.user_ids(alias.name)
        if alias.kind == GROUP:
            members = self._policy.groups.get(alias.name, ())
            return any(t.user_id(m) is None for m in members)
        if alias.kind == HOST:
            return alias.name not in self._policy.hosts
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
            cached = self._strings[r] = self.full(r).strings(self.tailnet.addr_text)
        return cached

    # --- addresses -> nodes ---------------------------------------------------
    def owners(self, lo: int, hi: int) -> list[int]:
        """Nodes holding an address in [lo, hi]."""
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
        cached = self._entry_nodes.get(key)
        if cached is None:
            if lo == 0 and hi == _MAX:
                cached = self.tailnet.all_nodes
            else:
                cached = frozenset(self.owners(lo, hi)) | self._routers(lo, hi)
            self._entry_nodes[key] = cached
        return cached

    def nodes_in(self, addrs: AddrSet, *, routes: bool = True, base: Iterable[int] = ()) -> frozenset[int]:
        """Nodes with an address in ``addrs``; with ``routes`` also overlapping subnet routers."""
        out = set(base)
        for lo, hi in addrs.ivs:
            if routes:
                out |= self.entry_nodes(lo, hi)
            else:
                out.update(self.owners(lo, hi))
        return frozenset(out)

    def source_nodes(self, nodes: frozenset[int], literal: AddrSet, full: AddrSet) -> frozenset[int]:
        """Matcher sources: identity nodes, owners of literal addresses, and subnet routers
        overlapping any of it (a router speaks for its subnets)."""
        out = set(nodes)
        t = self.tailnet
        for lo, hi in literal.ivs:
            out.update(self.owners(lo, hi))
        if t.router_intervals and full.overlaps_set(t.route_space):
            out.update(nid for lo, hi, nid in t.router_intervals if nid not in out and full.overlaps(lo, hi))
        return frozenset(out)

    def part_nodes(self, r: Resolved) -> frozenset[int]:
        """Destination nodes of one resolved alias (cached): identity nodes, owners of its
        literal addresses, subnet routers overlapping any of it."""
        cached = self._part_nodes.get(r)
        if cached is None:
            cached = self._part_nodes[r] = self.source_nodes(r.nodes, r.addrs, self.full(r))
        return cached
