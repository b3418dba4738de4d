"""Map sessions and the batcher that feeds them.

One MapSession per streaming ``POST /machine/map``. The batcher collects Changes for one
tick (``tuning.batch_change_delay``), merges them, and asks each session for the delta its
node needs. Work per change is proportional to the sessions that can see the changed node;
identical messages are encoded and compressed once per flush and shared.

A session remembers what it last sent (peer set, filter, SSH policy, DNS), so a policy change
produces only real differences and nothing at all for nodes whose view did not change.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import Any

from app.core.map import builder
from app.core.map.wire import encode_json, frame
from app.core.model import Node
from app.core.tailcfg import go_time
from app.service.changes import Change
from app.service.state import State

log = logging.getLogger("headscale.map")

QUEUE_LIMIT = 64     # pending messages before a slow session is resynchronised with a full map


_serials = iter(range(1, 1 << 62))


class MapSession:
    def __init__(self, node_id: int, capver: int, *, keepalive: tuple[float, float] = (50.0, 59.0)) -> None:
        self.node_id = node_id
        self.capver = capver
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.closed = asyncio.Event()
        self.keepalive = keepalive
        self.sent_peers: set[int] = set()
        self.sent_filter: Any = None
        self.sent_ssh: Any = None
        self.sent_dns: Any = None
        self.sent_capmap: Any = None
        self.sent_users: set[int] = set()
        self.sent_routes: dict[int, tuple[str, ...]] = {}   # per peer, when it offers routes
        self.needs_full = True
        self.messages_sent = 0
        self.serial = next(_serials)      # distinguishes a reconnect from the same session

    def push(self, message: bytes) -> None:
        if self.queue.qsize() >= QUEUE_LIMIT:
            # Too far behind: drop the backlog; the writer sends a fresh full map instead.
            while not self.queue.empty():
                self.queue.get_nowait()
            self.needs_full = True
            self.queue.put_nowait(b"")
            return
        self.queue.put_nowait(message)

    def close(self) -> None:
        self.closed.set()
        self.queue.put_nowait(b"")

    def next_keepalive(self) -> float:
        lo, hi = self.keepalive
        return random.uniform(lo, hi)


class Mapper:
    """Builds full maps and deltas from State, caching encoded peer entries."""

    def __init__(self, state: State) -> None:
        self.state = state
        # node id -> routes seen by the viewer -> (node record, online, encoded entry)
        self._peer_cache: dict[int, dict[tuple[str, ...], tuple[Node, bool, bytes]]] = {}

    def routes_for(self, viewer_id: int, peer_id: int) -> tuple[str, ...]:
        if not self.state.served.get(peer_id):
            return ()       # the common case: a peer that offers no routes
        offered = self.state.routes_of(peer_id)
        if not offered:
            return ()
        return tuple(self.state.policy.routes_for(viewer_id, peer_id, offered))

    def peer_blob(self, node: Node, routes: tuple[str, ...] = ()) -> bytes:
        """The encoded peer entry; shared by every viewer that gets the same routes."""
        st = self.state
        online = node.id in st.online
        entries = self._peer_cache.get(node.id)
        if entries is None:
            entries = self._peer_cache[node.id] = {}
        hit = entries.get(routes)
        if hit is not None and hit[0] is node and hit[1] == online:
            return hit[2]
        blob = encode_json(builder.tail_node(node, st.settings, routes=list(routes), online=online, now=st.now()))
        entries[routes] = (node, online, blob)
        return blob

    def viewer_blob(self, session: MapSession, node: Node) -> bytes:
        routes = self.routes_for(session.node_id, node.id)
        if routes:
            session.sent_routes[node.id] = routes
        else:
            session.sent_routes.pop(node.id, None)
        return self.peer_blob(node, routes)

    def forget(self, node_id: int) -> None:
        self._peer_cache.pop(node_id, None)

    def self_node(self, node: Node, capver: int) -> dict[str, Any]:
        st = self.state
        return builder.tail_node(
            node, st.settings, routes=st.routes_of(node.id), online=True,
            cap_map=st.policy.cap_map(node.id), now=st.now(), capver=capver,
        )

    def _profiles(self, node_ids: set[int]) -> list[dict[str, Any]]:
        st = self.state
        owners: set[int | None] = set()     # user ids; None for tagged/userless nodes
        for nid in node_ids:
            n = st.nodes.get(nid)
            if n is not None:
                owners.add(None if n.is_tagged or n.user_id is None else n.user_id)
        profiles: dict[int, dict[str, Any]] = {}
        for uid in owners:   # one profile per owner, not per node
            p = builder.user_profile(st.users.get(uid) if uid is not None else None)
            profiles[p["ID"]] = p
        return [profiles[k] for k in sorted(profiles)]

    def full_map(self, session: MapSession, *, include_peers: bool = True) -> bytes:
        st = self.state
        node = st.nodes[session.node_id]
        peers = st.visible_peers(node.id) if include_peers else set()
        head = builder.full_map_head(
            self.self_node(node, session.capver), st.settings,
            derp_map=st.derp_map,
            packet_filter=st.policy.filter_rules(node.id),
            user_profiles=self._profiles(peers | {node.id}),
            ssh_policy=st.policy.ssh_policy(node.id),
            dns=st.settings.dns_config,
            now=st.now(),
        )
        removed = session.sent_peers - peers
        if removed and not peers:
            head["PeersRemoved"] = sorted(removed)
        session.sent_peers = set(peers)
        session.sent_filter = head["PacketFilters"]["base"]
        session.sent_ssh = head.get("SSHPolicy")
        session.sent_dns = head["DNSConfig"]
        session.sent_users = {p["ID"] for p in head["UserProfiles"]}
        session.sent_capmap = st.policy.cap_map(node.id)
        session.needs_full = False
        session.sent_routes = {}
        blobs = [self.viewer_blob(session, st.nodes[p]) for p in sorted(peers)]
        return builder.assemble(head, "Peers", blobs)

    def delta(self, session: MapSession, change: Change) -> dict[str, Any] | None:
        """The MapResponse this session needs for ``change``, or None."""
        st = self.state
        nid = session.node_id
        node = st.nodes.get(nid)
        if node is None:
            return None
        out: dict[str, Any] = {}
        sent = session.sent_peers
        if change.policy:
            visible = st.visible_peers(nid)
            added = visible - sent
            removed = (sent - visible) | (change.peers_removed & sent)
        else:
            # Without a policy change visibility only moves for nodes that were added/removed,
            # so this costs the size of the change, not the number of peers: ``sent`` is
            # updated in place instead of copied.
            allowed = st.policy.peers(nid) if change.peers_changed else None
            added = {
                p for p in change.peers_changed
                if p not in sent and p != nid and p in st.nodes and p not in change.peers_removed
                and (allowed is None or p in allowed)
            }
            removed = change.peers_removed & sent
            visible = sent
            visible -= removed
            visible |= added
        changed = (change.peers_changed & visible) | added
        if change.policy:
            # Routers whose usable routes for this viewer moved with the policy.
            for p, offered in st.served.items():
                if offered and p in visible and self.routes_for(nid, p) != session.sent_routes.get(p, ()):
                    changed.add(p)
        if changed:
            out["PeersChanged"] = [st.nodes[p] for p in sorted(changed)]
        if removed:
            out["PeersRemoved"] = sorted(removed)
        patches = [
            {"NodeID": p, **fields} for p, fields in sorted(change.patches.items())
            if p in visible and p not in changed
        ]
        if patches:
            out["PeersChangedPatch"] = patches
        online = {str(p): v for p, v in change.online.items() if p in visible and p not in changed}
        if online:
            out["OnlineChange"] = online
        caps = st.policy.cap_map(nid) if change.policy else session.sent_capmap
        if nid in change.self_changed or caps != session.sent_capmap:
            out["Node"] = self.self_node(node, session.capver)
            session.sent_capmap = caps
        if change.policy:
            rules = st.policy.filter_rules(nid)
            if rules != session.sent_filter:
                out["PacketFilters"] = {"base": rules}
                session.sent_filter = rules
            ssh = st.policy.ssh_policy(nid)
            if ssh != session.sent_ssh:
                out["SSHPolicy"] = ssh if ssh is not None else {"rules": []}
                session.sent_ssh = ssh
        if change.derp_map:
            out["DERPMap"] = st.derp_map
        if change.dns and st.settings.dns_config != session.sent_dns:
            out["DNSConfig"] = st.settings.dns_config
            session.sent_dns = st.settings.dns_config
        if not out:
            return None
        if changed or "Node" in out:
            ids = set(changed) | {nid}
            profiles = [p for p in self._profiles(ids) if p["ID"] not in session.sent_users or "Node" in out]
            if profiles:
                out["UserProfiles"] = profiles
                session.sent_users |= {p["ID"] for p in profiles}
        session.sent_peers = visible
        return out

    def encode_delta(self, session: MapSession, delta: dict[str, Any], control_time: str) -> bytes:
        """Encode a delta; PeersChanged entries reuse the cached peer blobs."""
        peers = delta.pop("PeersChanged", None)
        delta["ControlTime"] = control_time
        if peers is None:
            return encode_json(delta)
        return builder.assemble(delta, "PeersChanged", [self.viewer_blob(session, n) for n in peers])


class Batcher:
    """Collects Changes and flushes them to sessions once per tick."""

    def __init__(self, state: State, mapper: Mapper, delay: float,
                 on_sent: Callable[[str], None] | None = None) -> None:
        self.state = state
        self.mapper = mapper
        self.delay = delay
        self.sessions: dict[int, MapSession] = {}
        self.pending = Change()
        self._wake = asyncio.Event()
        self.on_sent = on_sent or (lambda kind: None)
        state.listeners.append(self.add)

    def add(self, change: Change) -> None:
        for nid in change.peers_changed | change.peers_removed:
            self.mapper.forget(nid)
        self.pending.merge(change)
        self._wake.set()

    def attach(self, session: MapSession) -> MapSession | None:
        """Register ``session``; returns the session it replaced, if any."""
        old = self.sessions.get(session.node_id)
        self.sessions[session.node_id] = session
        return old

    def detach(self, session: MapSession) -> bool:
        """Remove ``session`` if it is still the node's current one."""
        if self.sessions.get(session.node_id) is session:
            del self.sessions[session.node_id]
            return True
        return False

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(self.delay)
            self._wake.clear()
            self.flush()

    def flush(self) -> None:
        change, self.pending = self.pending, Change()
        if not change:
            return
        control_time = go_time(self.state.now())
        encoded: dict[bytes, bytes] = {}
        for nid in change.full:
            s = self.sessions.get(nid)
            if s is not None and nid not in self.state.nodes:
                s.close()   # the node was deleted: end its stream
        for session in list(self.sessions.values()):
            if session.needs_full:
                continue
            try:
                delta = self.mapper.delta(session, change)
            except Exception:
                log.exception("building a delta for node %s failed; resynchronising", session.node_id)
                session.needs_full = True
                session.push(b"")
                continue
            if delta is None:
                continue
            raw = self.mapper.encode_delta(session, delta, control_time)
            msg = encoded.get(raw)
            if msg is None:
                msg = encoded[raw] = frame(raw)
            session.push(msg)
            self.on_sent("delta")
