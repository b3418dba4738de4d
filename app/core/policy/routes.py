"""Routes and tags: auto-approval, which peer routes a viewer may use, tag ownership.

PROTOCOL.md §5.6 and §5.8; headscale ``NodeCanApproveRoute``, ``RoutesForPeer`` /
``ReduceRoutes`` / ``ViaRoutesForPeer`` and ``NodeCanHaveTag``. Approval and ownership are
decided by identity (the node's user or tags) rather than by IP, so they also work for a
node that is registering and is not yet part of the compiled node set.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..model import Node
from .ipset import INTERNET, AddrSet, network_str, prefix_interval
from .model import GROUP, TAG, USER, Alias, Network
from .tailnet import is_exit_route

if TYPE_CHECKING:
    from .compile import CompiledPolicy
    from .rule import _Rule

__all__ = [
    "allowed_ips_for_peer",
    "auto_approved_routes",
    "can_access_route",
    "node_can_approve_route",
    "node_can_have_tag",
]


def _is_member(c: CompiledPolicy, node: Node, aliases: Iterable[Alias]) -> bool:
    t = c.tailnet
    groups = c.policy.groups if c.policy else {}
    for a in aliases:
        if a.kind == TAG and a.name in node.tags:
            return True
        if node.tags or node.user_id is None:
            continue
        if a.kind == USER and node.user_id in t.user_ids(a.name):
            return True
        if a.kind == GROUP and any(t.user_id(m) == node.user_id for m in groups.get(a.name, ())):
            return True
    return False


def node_can_approve_route(c: CompiledPolicy, node: Node, route: str) -> bool:
    """Whether ``autoApprovers`` let this node's route be approved without an admin."""
    if c.policy is None:
        return False
    try:
        net = ipaddress.ip_network(route, strict=False)
    except ValueError:
        return False
    approvers = c.policy.auto_approvers
    if is_exit_route(net):
        return _is_member(c, node, approvers.exit_node)
    for prefix, who in approvers.routes:
        if (prefix.version == net.version and prefix.prefixlen <= net.prefixlen
                and net.subnet_of(prefix) and _is_member(c, node, who)):
            return True
    return False


def auto_approved_routes(c: CompiledPolicy, node: Node) -> set[str]:
    """The node's advertised routes that the policy approves (approval only adds, never removes)."""
    return {r for r in node.routable_ips if node_can_approve_route(c, node, r)}


def node_can_have_tag(c: CompiledPolicy, node: Node, tag: str) -> bool:
    """Whether the node may request ``tag`` (``tailscale up --advertise-tags``).

    True when the node's user (or a group containing it) owns the tag through ``tagOwners``,
    following tag-owns-tag chains, or when the node already holds a tag that owns it.
    """
    p = c.policy
    if p is None or tag not in p.tag_owners:
        return False
    seen: set[str] = set()
    stack = [tag]
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        for owner in p.tag_owners.get(current, ()):
            if owner.kind == TAG:
                if owner.name in node.tags:
                    return True
                stack.append(owner.name)
            elif _is_member(c, node, [owner]):
                return True
    return False


# --- route visibility ----------------------------------------------------------

def _matchers(c: CompiledPolicy, nid: int) -> list[tuple[AddrSet, AddrSet]]:
    cache = c.__dict__.setdefault("_route_matchers", {})  # type: ignore[attr-defined]
    rules: list[_Rule] = c.global_rules + c.self_rules_for(nid) + c.via_rules(nid)
    out = []
    for rule in rules:
        m = cache.get(id(rule))
        if m is None:
            m = (rule.src, rule.dst_set(), rule)
            cache[id(rule)] = m
        out.append((m[0], m[1]))
    return out


def _is_internet(dst: AddrSet) -> bool:
    return INTERNET.issubset(dst)


def can_access_route(c: CompiledPolicy, viewer_id: int, route: Network) -> bool:
    """headscale ``CanAccessRoute``: may the viewer use (or answer for) this route?"""
    t = c.tailnet
    ips = t.addrs[viewer_id]
    lo, hi = prefix_interval(route)
    own = [prefix_interval(r) for r in t.subnet_routes.get(viewer_id, ())]
    is_exit = viewer_id in t.exit_nodes
    for src, dst in _matchers(c, viewer_id):
        if src.contains_any(ips) and dst.overlaps(lo, hi):
            return True
        # the viewer is a destination (directly, or as an exit node for internet traffic)
        # and needs the route back to a source subnet (captured from Tailscale)
        if src.overlaps(lo, hi) and (dst.contains_any(ips) or (is_exit and _is_internet(dst))):
            return True
        if own:
            if any(src.overlaps(a, b) for a, b in own) and dst.overlaps(lo, hi):
                return True
            if src.overlaps(lo, hi) and any(dst.overlaps(a, b) for a, b in own):
                return True
    return False


def _via_effects(c: CompiledPolicy, viewer_id: int, peer_id: int
                 ) -> tuple[list[Network], list[Network], list[Network]]:
    """(include, exclude, use_primary) routes of ``peer`` for ``viewer`` from via grants."""
    from .grants import acl_to_grants
    p = c.policy
    include: list[Network] = []
    exclude: list[Network] = []
    use_primary: list[Network] = []
    if p is None or viewer_id == peer_id:
        return include, exclude, use_primary
    grants = list(p.grants)
    for acl in p.acls:
        grants.extend(acl_to_grants(acl))
    if not any(g.via for g in grants):
        return include, exclude, use_primary
    t = c.tailnet
    viewer_ips = t.addrs[viewer_id]
    peer = t.nodes[peer_id]
    peer_routes = t.subnet_routes.get(peer_id, ())
    matches: list[bool] = []
    dsts: list[list[Network]] = []
    internet: list[bool] = []
    for g in grants:
        hit = False
        for a in g.src:
            r = c.resolve(a)
            if viewer_id in r.nodes or (r.addrs and r.addrs.contains_any(viewer_ips)):
                hit = True
                break
        matches.append(hit)
        nets: list[Network] = []
        inet = False
        for d in g.dst:
            if d.is_autogroup("autogroup:internet"):
                inet = True
            elif not c.resolve_error(d):
                nets.extend(c.full(c.resolve(d)).prefixes())
        dsts.append(nets)
        internet.append(inet)
    for i, g in enumerate(grants):
        if not g.via or not matches[i]:
            continue
        matched = [r for d in dsts[i] for r in peer_routes if d.version == r.version and d.overlaps(r)]
        if internet[i] and peer_id in t.exit_nodes:
            matched.extend(t.exit_routes[peer_id])
        if not matched:
            continue
        if any(tag in peer.tags for tag in g.via):
            include.extend(matched)
        else:
            exclude.extend(matched)
    if include or exclude:
        for i, g in enumerate(grants):
            if not g.via or not matches[i]:
                continue
            for d in dsts[i]:
                for route in list(include):
                    if d.version != route.version or not d.overlaps(route):
                        continue
                    primary = min((nid for nid in t.order
                                   if any(tag in t.nodes[nid].tags for tag in g.via)
                                   and route in t.subnet_routes.get(nid, ())), default=None)
                    if primary is not None and primary != peer_id:
                        include = [r for r in include if r != route]
                        if route not in exclude:
                            exclude.append(route)
        for i, g in enumerate(grants):
            if g.via or not matches[i]:
                continue
            for d in dsts[i]:
                for route in include:
                    if d.version == route.version and d.overlaps(route) and route not in use_primary:
                        use_primary.append(route)
                exclude = [r for r in exclude if not (d.version == r.version and d.overlaps(r))]
    return include, exclude, use_primary


def allowed_ips_for_peer(c: CompiledPolicy, viewer_id: int, peer_id: int,
                         primary_routes: Iterable[str] | None = None) -> list[str]:
    """Peer ``AllowedIPs`` for this viewer: the peer's addresses plus the routes it serves
    that the viewer may use (PROTOCOL.md §5.6). ``primary_routes`` are the subnet routes the
    peer is HA primary for (default: all its approved subnet routes)."""
    t = c.tailnet
    peer = t.nodes[peer_id]
    # disable-ipv4 (on either end) keeps the peer's IPv4 address out of the viewer's netmap
    v4_off = "disable-ipv4" in c.cap_map(peer_id) or "disable-ipv4" in c.cap_map(viewer_id)
    v4 = None if v4_off else peer.ipv4
    out = [f"{ip}/{32 if '.' in ip else 128}" for ip in (v4, peer.ipv6) if ip]
    if primary_routes is None:
        primaries = list(t.subnet_routes.get(peer_id, ()))
    else:
        primaries = [ipaddress.ip_network(r, strict=False) for r in primary_routes]
    exits = list(t.exit_routes.get(peer_id, ()))
    if c.allow_all:
        routes = primaries + exits
    else:
        include, exclude, use_primary = _via_effects(c, viewer_id, peer_id)
        candidates = [r for r in primaries + exits if r not in exclude]
        routes = [r for r in candidates if can_access_route(c, viewer_id, r)]
        for r in include:
            if r in routes:
                continue
            if r in primaries or r not in use_primary:
                routes.append(r)
        for r in primaries:
            if r in t.subnet_routes.get(viewer_id, ()) and r not in routes:
                routes.append(r)
    out.extend(network_str(r) for r in routes)
    return out

