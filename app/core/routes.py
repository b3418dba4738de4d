"""Subnet routes and exit nodes: which node serves which prefix (PROTOCOL.md 5.6).

Served routes = advertised (Hostinfo.RoutableIPs) ∩ approved. Each non-exit prefix gets one
primary: the current primary while it stays online and serving, else the lowest-ID online
node serving it. Exit routes are not elected; every approved exit node offers them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping

from app.core.model import Node

EXIT_ROUTES = frozenset({"0.0.0.0/0", "::/0"})


def canonical(prefix: str) -> str:
    return str(ipaddress.ip_network(prefix, strict=False))


def served_routes(node: Node, extra_approved: Iterable[str] = ()) -> list[str]:
    approved = {canonical(p) for p in (*node.approved_routes, *extra_approved)}
    out = []
    for p in node.routable_ips:
        try:
            c = canonical(p)
        except ValueError:
            continue
        if c in approved:
            out.append(c)
    return sorted(set(out))


def elect_primaries(
    served: Mapping[int, list[str]],
    online: set[int],
    previous: Mapping[str, int] | None = None,
    unhealthy: set[int] | frozenset[int] = frozenset(),
) -> dict[str, int]:
    """prefix -> node id of its primary router. The previous primary keeps the prefix while it
    is online and healthy; ``unhealthy`` routers (failed HA probes, app.core.haprobe) are passed
    over while a healthy one serves the prefix, and kept only when none is healthy."""
    candidates: dict[str, list[int]] = {}
    for nid, routes in served.items():
        if nid not in online:
            continue
        for r in routes:
            if r not in EXIT_ROUTES:
                candidates.setdefault(r, []).append(nid)
    out = {}
    for prefix, ids in candidates.items():
        healthy = [i for i in ids if i not in unhealthy] if unhealthy else ids
        pool = healthy or ids
        prev = (previous or {}).get(prefix)
        out[prefix] = prev if prev in pool else min(pool)
    return out


def routes_for_peer(node_id: int, served: list[str], primaries: Mapping[str, int]) -> list[str]:
    """Routes viewers should send to this node: its primary subnet routes and exit routes."""
    return [r for r in served if r in EXIT_ROUTES or primaries.get(r) == node_id]
