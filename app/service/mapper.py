"""Full maps and peer entries from State, with the caches that make them cheap at 10k nodes.

* A peer entry (tailcfg.Node JSON) is encoded once per node version and routes-as-seen, and
  shared by every viewer.
* A full map's peers come as pre-compressed zstd frames of 128-id chunks
  (app.core.map.chunks), cached per (chunk, member ids) and rebuilt only when a record in the
  chunk moved (``State.chunk_gen``): building a map for one node of a quiet 10,000-node
  tailnet costs copying ~80 frames plus compressing its own head.
* A cached chunk stays usable while only a few of its peers came online since it was built
  (coming online does not move a record, so ``State.set_online`` leaves ``chunk_gen`` alone):
  the map is followed at once by an OnlineChange for those peers. Otherwise a restart storm,
  where every reconnect flips one peer online, would recompress every chunk for every map.
* The peers a session was sent are references to the shared view (``State.peer_view``), not a
  copy per session.
"""

from __future__ import annotations

import logging
from bisect import bisect_left
from typing import TYPE_CHECKING, Any

from app.core.map import builder
from app.core.map.chunks import CHUNK_BITS, COMMA, assemble_pieces, chunk_frame
from app.core.map.wire import encode_json, frame
from app.core.model import Node
from app.service.state import State

if TYPE_CHECKING:
    from app.service.sessions import MapSession

log = logging.getLogger("headscale.map")

_CHUNK_VARIANTS = 4        # member sets cached per chunk (visibility classes seeing it differently)
# Peers of a cached chunk that may have come online since it was built before it is rebuilt:
# rebuilding costs compressing ~128 entries, each stale peer ~12 bytes of the follow-up.
STALE_ONLINE = 16
_SUB_BITS = 4              # the viewer's own chunk goes out as sub-chunks of 16 ids
# Peers that came online since a shared run of frames was joined before it is joined again.
RUN_LATE_MAX = 256


class _Run:
    """The chunk frames of one shared peer view joined once (``f1 COMMA f2 ...``), so a map is
    the run with the viewer's own chunk cut out, not ~80 lookups and a join per viewer."""

    __slots__ = ("base", "data", "epoch", "pos", "spans", "touch")

    def __init__(self, base: frozenset[int], touch: int, epoch: int, pos: int, data: bytes,
                 spans: dict[int, tuple[int, int]]) -> None:
        self.base, self.touch, self.epoch, self.pos = base, touch, epoch, pos
        self.data, self.spans = data, spans   # chunk -> (start, end) of its frame in data


class Mapper:
    """Builds full maps and peer entries from State, caching encoded and compressed pieces."""

    def __init__(self, state: State) -> None:
        self.state = state
        # node id -> routes seen by the viewer -> (node record, online, encoded entry)
        self._peer_cache: dict[int, dict[tuple[str, ...], tuple[Node, bool, bytes]]] = {}
        self._broken: dict[int, Node] = {}   # node version whose entry failed (logged once)
        # chunk -> member ids -> (generation, zstd frame, members online when it was built)
        self._chunks: dict[int, dict[tuple[int, ...], tuple[int, bytes, frozenset[int]]]] = {}
        # id(shared base set) -> (the set, its ids sorted) / (the set, its owners, State.owner_gen)
        self._sorted: dict[int, tuple[frozenset[int], list[int]]] = {}
        self._owner_cache: dict[int, tuple[frozenset[int], set[int | None], int]] = {}
        self._users: dict[frozenset[int], frozenset[int]] = {}   # interned "profiles sent" sets
        self._runs: dict[int, _Run] = {}       # id(shared base) -> its joined run
        self.full_maps = 0        # built so far (the batcher watches the rate to spot a storm)
        self.chunks_built = 0     # chunk frames compressed (cached or not)

    def intern_users(self, users: frozenset[int]) -> frozenset[int]:
        """One object per distinct set of user ids, so sessions that were sent the same
        profiles can be grouped by identity."""
        hit = self._users.get(users)
        if hit is None:
            if len(self._users) > 4096:
                self._users.clear()
            hit = self._users[users] = users
        return hit

    # ---- peer entries ----------------------------------------------------------------------

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

    def peer_blobs(self, session: MapSession, peers: list[Node]) -> list[bytes]:
        """Encoded peer entries; a peer whose entry cannot be built is left out (and logged
        once per node version), so one node's bad record never costs others their map."""
        out = []
        for peer in peers:
            try:
                out.append(self.viewer_blob(session, peer))
            except Exception:   # any failure is contained to this one peer entry
                if self._broken.get(peer.id) is not peer:
                    self._broken[peer.id] = peer
                    log.exception("cannot build the map entry of node %s; leaving it out of maps", peer.id)
        return out

    def forget(self, node_id: int) -> None:
        self._peer_cache.pop(node_id, None)
        self._broken.pop(node_id, None)

    def self_node(self, node: Node, capver: int) -> dict[str, Any]:
        st = self.state
        return builder.tail_node(
            node, st.settings, routes=st.routes_of(node.id), online=True,
            cap_map=st.policy.cap_map(node.id), now=st.now(), capver=capver,
        )

    def profiles(self, node_ids: Any) -> list[dict[str, Any]]:
        nodes = self.state.nodes
        return self._owner_profiles({_owner(nodes[p]) for p in node_ids if p in nodes})

    def _owner_profiles(self, owners: set[int | None]) -> list[dict[str, Any]]:
        st = self.state
        profiles: dict[int, dict[str, Any]] = {}
        for uid in owners:   # one profile per owner, not per node
            p = builder.user_profile(st.users.get(uid) if uid is not None else None)
            profiles[p["ID"]] = p
        return [profiles[k] for k in sorted(profiles)]

    # ---- full maps -------------------------------------------------------------------------

    def _sorted_base(self, base: frozenset[int]) -> list[int]:
        hit = self._sorted.get(id(base))
        if hit is not None and hit[0] is base:
            return hit[1]
        if len(self._sorted) > 64:          # old snapshots: drop them all, current ones come back
            self._sorted.clear()
        ids = sorted(base)
        self._sorted[id(base)] = (base, ids)
        return ids

    def _peer_ids(self, nid: int, base: frozenset[int], extra: frozenset[int]) -> list[int]:
        """The viewer's peers, sorted, that exist now."""
        ids = self._sorted_base(base)
        nodes = self.state.nodes
        if extra:
            ids = sorted(set(ids) | extra)
        i = bisect_left(ids, nid)
        if i < len(ids) and ids[i] == nid:
            ids = ids[:i] + ids[i + 1:]
        if len(nodes) < len(ids) or extra:
            ids = [p for p in ids if p in nodes]
        return ids

    def _sent_peer_ids(self, session: MapSession) -> list[int]:
        """The sorted peers ``session`` was just sent (by ``_begin_full``)."""
        return self._peer_ids(session.node_id, session.sent_base, session.sent_extra)

    def _begin_full(self, session: MapSession, include_peers: bool) -> dict[str, Any]:
        """The head of a full map; records what the session was sent (peers: sent_base/extra)."""
        st = self.state
        self.full_maps += 1
        node = st.nodes[session.node_id]
        base, extra = st.peer_view(node.id)
        if not include_peers:
            base, extra = frozenset(), frozenset()
        head = builder.full_map_head(
            self.self_node(node, session.capver), st.settings,
            derp_map=st.derp_map,
            packet_filter=st.policy.filter_rules(node.id),
            user_profiles=self._owner_profiles(self._owners(base, extra | {node.id})),
            ssh_policy=st.policy.ssh_policy(node.id),
            dns=st.settings.dns_config,
            now=st.now(),
        )
        if not include_peers and (session.sent_base or session.sent_extra):
            removed = sorted(p for p in session.sent_base | session.sent_extra if p != node.id)
            if removed:
                head["PeersRemoved"] = removed
        session.sent_base, session.sent_extra = base, extra
        session.sent_filter = head["PacketFilters"]["base"]
        session.sent_ssh = head.get("SSHPolicy")
        session.sent_dns = head["DNSConfig"]
        session.sent_users = self.intern_users(frozenset(p["ID"] for p in head["UserProfiles"]))
        session.sent_capmap = st.policy.cap_map(node.id)
        session.needs_full = False
        session.sent_routes = {}
        return head

    def _owners(self, base: frozenset[int], more: frozenset[int] | set[int]) -> set[int | None]:
        """Owners (user ids, None for tagged) of a base set, cached per base, plus ``more``."""
        st = self.state
        hit = self._owner_cache.get(id(base))
        if hit is None or hit[0] is not base or hit[2] != st.owner_gen:
            if len(self._owner_cache) > 64:
                self._owner_cache.clear()
            hit = (base, {_owner(st.nodes[p]) for p in base if p in st.nodes}, st.owner_gen)
            self._owner_cache[id(base)] = hit
        out = set(hit[1])
        out.update(_owner(st.nodes[p]) for p in more if p in st.nodes)
        return out

    def full_map(self, session: MapSession, *, include_peers: bool = True) -> bytes:
        """The full MapResponse as one JSON document (tests, one-shot requests)."""
        head = self._begin_full(session, include_peers)
        nodes = self.state.nodes
        peers = self._sent_peer_ids(session)
        return builder.assemble(head, "Peers", self.peer_blobs(session, [nodes[p] for p in peers]))

    def full_map_frame(self, session: MapSession, *, include_peers: bool = True, exact: bool = False) -> bytes:
        """The full MapResponse framed for the stream (``full_map_pieces`` joined)."""
        return b"".join(self.full_map_pieces(session, include_peers=include_peers, exact=exact))

    def full_map_pieces(self, session: MapSession, *, include_peers: bool = True,
                        exact: bool = False) -> list[bytes | memoryview]:
        """The full MapResponse framed for the stream, as pieces that concatenate to it: peers
        from cached compressed chunks (slices of the shared run), not joined into one copy.

        Unless ``exact``, a chunk may say a few peers are offline that came online since it was
        built; the pieces then end with a second message right after the map, an OnlineChange
        for exactly those peers (``exact``: one message, for one-shot answers)."""
        head = self._begin_full(session, include_peers)
        late: dict[str, bool] | None = None if exact else {}
        pieces = None if exact else self._from_run(session, late)
        if pieces is None:      # the sorted peer list (a copy of 10,000 ids) only when needed
            pieces = []
            for f in self._chunk_frames(session, self._sent_peer_ids(session), late):
                if pieces:
                    pieces.append(COMMA)
                pieces.append(f)
        after = frame(encode_json({"OnlineChange": late, "ControlTime": head["ControlTime"]})) if late else b""
        return assemble_pieces(head, "Peers", pieces, after)

    def _from_run(self, session: MapSession, late: dict[str, bool]) -> list[bytes | memoryview] | None:
        """The peers as pieces of the shared view's joined run, or None where the view is not
        shared alike by every viewer (own extra peers, routers, ids since deleted)."""
        st = self.state
        base, extra = session.sent_base, session.sent_extra
        if extra or not base or len(base) > len(st.nodes) or not st.routers.isdisjoint(base):
            return None
        run = self._runs.get(id(base))
        if (run is None or run.base is not base or run.touch != st.touch_gen or run.epoch != st.online_epoch
                or len(st.online_log) - run.pos > RUN_LATE_MAX):
            run = self._join_run(session, base)
            if run is None:
                return None
        nid, online = session.node_id, st.online
        for p in st.online_log[run.pos:]:
            if p != nid and p in base and p in online:
                late[str(p)] = True
        own = nid >> CHUNK_BITS
        span = run.spans.get(own)
        if span is None:
            return [run.data]
        view = memoryview(run.data)
        prefix, suffix = view[:span[0]], view[span[1]:]
        lo = own << CHUNK_BITS
        ids = self._sorted_base(base)
        members = [p for p in ids[bisect_left(ids, lo):bisect_left(ids, lo + (1 << CHUNK_BITS))] if p != nid]
        mine = self._sub_frames(session, st.chunk_gen.get(own, 0), members, late)
        if mine:
            return [prefix, COMMA.join(mine), suffix]
        c = len(COMMA)   # the viewer was alone in its chunk: one comma fewer
        if len(prefix) and len(suffix):
            return [prefix, suffix[c:]]
        return [prefix[:-c] if len(prefix) else prefix, suffix[c:] if len(suffix) else suffix]

    def _join_run(self, session: MapSession, base: frozenset[int]) -> _Run | None:
        st = self.state
        ids = self._sorted_base(base)
        if not all(p in st.nodes for p in ids):
            return None
        frames: list[bytes] = []
        spans: dict[int, tuple[int, int]] = {}
        at, i, n = 0, 0, len(ids)
        while i < n:
            c = ids[i] >> CHUNK_BITS
            j = bisect_left(ids, (c + 1) << CHUNK_BITS, i)
            members = tuple(ids[i:j])
            i = j
            f = self._cached_frame(session, c, st.chunk_gen.get(c, 0), members, None)
            if f is None or f is not self._chunks[c].get(members, (0, None))[1]:
                return None     # an entry could not be built: the per-chunk path leaves it out
            if frames:
                at += len(COMMA)
            spans[c] = (at, at + len(f))
            at += len(f)
            frames.append(f)
        if len(self._runs) >= 16:          # a run is ~130 bytes per peer: bound what old views hold
            self._runs.clear()
        run = self._runs[id(base)] = _Run(base, st.touch_gen, st.online_epoch, len(st.online_log),
                                          COMMA.join(frames), spans)
        return run

    def _sub_frames(self, session: MapSession, gen: int, members: list[int],
                    late: dict[str, bool] | None) -> list[bytes]:
        """The viewer's own chunk (without the viewer) as frames of 16-id sub-chunks: only the
        viewer's own sub-chunk is compressed for this map, the others are cached."""
        nid, nodes = session.node_id, self.state.nodes
        out: list[bytes] = []
        k = 0
        while k < len(members):
            sub = members[k] >> _SUB_BITS
            m = k
            while m < len(members) and members[m] >> _SUB_BITS == sub:
                m += 1
            part, k = tuple(members[k:m]), m
            if nid >> _SUB_BITS == sub:
                blobs = self.peer_blobs(session, [nodes[p] for p in part])
                f = chunk_frame(blobs) if blobs else None
            else:
                f = self._cached_frame(session, -1 - sub, gen, part, late)
            if f is not None:
                out.append(f)
        return out

    def _chunk_frames(self, session: MapSession, peers: list[int], late: dict[str, bool] | None) -> list[bytes]:
        """Frames of the viewer's peers; stale online flags of reused frames go into ``late``
        (None: no staleness allowed)."""
        st = self.state
        nodes, routers, gens = st.nodes, st.routers, st.chunk_gen
        own = session.node_id >> CHUNK_BITS
        out: list[bytes] = []
        i, n = 0, len(peers)
        while i < n:
            c = peers[i] >> CHUNK_BITS
            j = bisect_left(peers, (c + 1) << CHUNK_BITS, i)
            members = tuple(peers[i:j])
            i = j
            if routers and not routers.isdisjoint(members):
                # Routes depend on the viewer: this chunk is built for this session alone.
                blobs = self.peer_blobs(session, [nodes[p] for p in members])
                if blobs:
                    out.append(chunk_frame(blobs))
                continue
            gen = gens.get(c, 0)
            if c != own:
                f = self._cached_frame(session, c, gen, members, late)
                if f is not None:
                    out.append(f)
                continue
            # The viewer's own chunk lacks the viewer: as one frame it would be a variant of its
            # own, compressed for every map. In sub-chunks only the viewer's own is.
            out.extend(self._sub_frames(session, gen, list(members), late))
        return out

    def _cached_frame(self, session: MapSession, key: int, gen: int, members: tuple[int, ...],
                      late: dict[str, bool] | None) -> bytes | None:
        """The compressed frame of ``members`` (a chunk, or a sub-chunk when ``key`` < 0), cached
        per member set while the chunk's generation holds."""
        online = self.state.online
        variants = self._chunks.get(key)
        if variants is None:
            variants = self._chunks[key] = {}
        hit = variants.get(members)
        if hit is not None and hit[0] == gen:
            came = online.intersection(members) - hit[2] if online else ()
            if not came:
                return hit[1]
            if late is not None and len(came) <= STALE_ONLINE:
                for p in came:
                    late[str(p)] = True
                return hit[1]
        nodes = self.state.nodes
        blobs = self.peer_blobs(session, [nodes[p] for p in members])
        if not blobs:
            return None
        f = chunk_frame(blobs)
        self.chunks_built += 1
        if len(blobs) == len(members):      # never cache a chunk with an entry left out
            if len(variants) >= _CHUNK_VARIANTS or (hit is not None and hit[0] != gen):
                for k in [k for k, v in variants.items() if v[0] != gen] or list(variants)[:1]:
                    del variants[k]
            variants[members] = (gen, f, frozenset(online.intersection(members)))
        return f


def _owner(node: Node) -> int | None:
    """The user whose profile a peer entry points at; None for tagged/userless nodes."""
    return None if node.is_tagged or node.user_id is None else node.user_id
