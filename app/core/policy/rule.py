"""Unreduced filter rules and grant data shared by the compiler stages (compile.py builds
them, nodefilter.py reduces them per node, visibility.py matches them)."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .aliases import Resolved
from .filter import net_port
from .ipset import V6_BASE, AddrSet, prefix_interval
from .model import IpEntry, Network, PortRange

Rule = dict[str, Any]
Entry = tuple[str, int, int, PortRange]          # DstPorts entry: text, address interval, ports
_MAX = V6_BASE + (1 << 128) - 1                   # "*" covers the whole number line
_EBITS = 32                                       # entry index bits in an entry id
_V4_ALL = (0, V6_BASE - 1)
_V6_ALL = (V6_BASE, _MAX)
_NO_PEERS: frozenset[int] = frozenset()


@dataclass(slots=True)
class _Rule:
    """An unreduced filter rule plus what is needed to reduce and match it."""

    src_ips: list[str]
    src: AddrSet                      # everything SrcIPs covers
    src_nodes: frozenset[int]         # nodes named by identity (their IPs are in ``src``)
    src_literal: AddrSet              # the rest of ``src`` (CIDRs, hosts, "*", routes)
    proto: tuple[int, ...] = ()
    entries: list[Entry] = field(default_factory=list)
    caps: list[tuple[tuple[Network, ...], Mapping[str, Any]]] | None = None
    by_node: dict[int, list[int]] | None = None     # entry indices per owning node (self rules)
    dst_parts: list[Resolved | None] | None = None  # what the destinations resolve to (None = "*")

    def dst_set(self) -> AddrSet:
        ivs = [(lo, hi) for _, lo, hi, _ in self.entries]
        for dsts, _ in self.caps or ():
            ivs.extend(prefix_interval(d) for d in dsts)
        return AddrSet(ivs)


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
    src_literal: AddrSet
    dsts: list[Network]
    internet: bool
    ip: tuple[IpEntry, ...]


def _wire(rule: _Rule, entries: list[Entry], cache: dict[tuple[str, PortRange], dict[str, Any]]) -> Rule:
    """Wire form; identical DstPorts elements are shared objects (read-only)."""
    dst = []
    for e in entries:
        key = (e[0], e[3])
        item = cache.get(key)
        if item is None:
            item = cache[key] = net_port(e[0], e[3])
        dst.append(item)
    out: Rule = {"SrcIPs": rule.src_ips, "DstPorts": dst}
    if rule.proto:
        out["IPProto"] = list(rule.proto)
    return out


def _capmap_json(capmap: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (list(v) if v is not None else None) for k, v in capmap.items()}


def _host_net(ip: str) -> Network:
    a = ipaddress.ip_address(ip)
    return ipaddress.ip_network((a, a.max_prefixlen))
