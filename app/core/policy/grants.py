"""Rule compilation stage: a policy's ACLs and grants → unreduced global filter rules
(``_Rule``), plus the autogroup:self and via grants that expand per user / per router later.
The second stage of ``CompiledPolicy`` (compile.py), after alias resolution (resolver.py).

ACLs become grants (one per destination; non-``autogroup:self`` ones first). A policy without
``acls`` and ``grants`` gets Tailscale's default grant ``* -> *:*``. Each grant's sources
resolve once; regular destinations become global rules, merged by (SrcIPs, IPProto) as
headscale's ``mergeFilterRules`` does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .aliases import NOTHING, Resolved
from .filter import COMPANION_CAPS
from .ipset import ALL, AddrSet
from .model import (
    AG_DANGER_ALL,
    AG_INTERNET,
    AG_SELF,
    ALL_PORTS,
    AUTOGROUP,
    HOST,
    WILDCARD,
    Acl,
    Alias,
    Grant,
    IpEntry,
    Network,
    Policy,
)
from .ports import protocol_numbers
from .resolver import AliasResolver
from .rule import _MAX, Entry, _Rule, _SelfGrant, _ViaGrant

__all__ = ["Rules", "acl_to_grants", "companions", "compile_rules"]

_ANY = Alias(WILDCARD, "*")
_DEFAULT_GRANT = Grant((_ANY,), (_ANY,), (IpEntry("", (ALL_PORTS,)),))


@dataclass(slots=True)
class Rules:
    """What a policy compiles to before any per-node work."""

    rules: list[_Rule] = field(default_factory=list)              # global rules, policy order
    self_grants: list[_SelfGrant] = field(default_factory=list)   # autogroup:self destinations
    via_grants: list[_ViaGrant] = field(default_factory=list)


def compile_rules(policy: Policy | None, resolver: AliasResolver) -> Rules:
    """The policy's rules (None: no policy, the literal allow-all rule, PROTOCOL.md §5.4)."""
    if policy is None:
        return Rules([_Rule(["*"], ALL, frozenset(), ALL, (), [("*", 0, _MAX, ALL_PORTS)])])
    out = Rules()
    grants = list(policy.grants) if policy.has_filter else [_DEFAULT_GRANT]
    for acl in policy.acls:
        grants.extend(acl_to_grants(acl))
    compiler = _GrantCompiler(resolver, out)
    raw: list[_Rule] = []
    for g in grants:
        compiler.compile_grant(g, raw)
    out.rules = _merge(raw)
    return out


def acl_to_grants(acl: Acl) -> list[Grant]:
    """One grant per destination; non-self destinations first unless all are autogroups."""
    if any(d.alias.kind != AUTOGROUP for d in acl.dst):
        ordered = ([d for d in acl.dst if not d.alias.is_autogroup(AG_SELF)]
                   + [d for d in acl.dst if d.alias.is_autogroup(AG_SELF)])
    else:
        ordered = list(acl.dst)
    return [Grant(acl.src, (d.alias,), (IpEntry(acl.proto, d.ports),)) for d in ordered]


class _GrantCompiler:
    """Compiles grants one at a time into ``out`` (rules) and the ``Rules``' per-user and
    per-router grant lists, reading aliases through the resolver."""

    def __init__(self, resolver: AliasResolver, out: Rules) -> None:
        self.tailnet = resolver.tailnet
        self.resolve = resolver.resolve
        self.resolve_error = resolver.resolve_error
        self.full = resolver.full
        self.strings = resolver.strings
        self._self_grants = out.self_grants
        self._via_grants = out.via_grants

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

    def compile_grant(self, g: Grant, out: list[_Rule]) -> None:
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
        companions(app, dst_strings, tuple(src_prefixes), out)

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


def companions(app: Mapping[str, Any], dst_strings: list[str], src_prefixes: tuple[Network, ...],
               out: list[_Rule]) -> None:
    """drive and relay grants also send a capability back from destinations to sources."""
    for original, companion in COMPANION_CAPS:
        if original in app:
            back = AddrSet().union(*(AddrSet.parse(s) for s in dst_strings))
            out.append(_Rule(list(dst_strings), back, frozenset(), back,
                             caps=[(src_prefixes, {companion: None})]))


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


