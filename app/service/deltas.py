"""Per-flush deltas: what each session needs for one merged Change, shared where possible.

A session remembers what it was sent as references to shared objects (the peer view base,
an interned set of user ids), so sessions in the same position form a group: those for whom
nothing about the change is personal (it is not about their own node, no policy change, no
routes or own extra peers involved) get one message built and compressed once per group and
flush. The rest get a delta of their own. Work per flush is O(groups x change + personal
sessions x change + sessions), never O(sessions x peers).
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from typing import TYPE_CHECKING, Any

from app.core.map import builder
from app.core.map.wire import encode_json, frame
from app.service.changes import Change

if TYPE_CHECKING:
    from app.service.mapper import Mapper
    from app.service.sessions import MapSession

_EMPTY: frozenset[int] = frozenset()


class Flush:
    """Memo of one flush: diffs between shared views, shared messages, interned user sets."""

    def __init__(self, mapper: Mapper, change: Change, control_time: str) -> None:
        self.mapper = mapper
        self.change = change
        self.control_time = control_time
        st = mapper.state
        ch = change
        # Anything that moves routes (a router's record, the policy) is worked out per viewer.
        self.routes_move = ch.policy or not st.routers.isdisjoint(ch.peers_changed | ch.peers_removed)
        self.about = ch.self_changed | ch.peers_changed | ch.peers_removed | set(ch.online) | set(ch.patches)
        self.candidates = ch.peers_changed | ch.peers_removed
        self._diffs: dict[tuple[int, ...], tuple[Any, Any, Any, Any]] = {}
        self._groups: dict[tuple[int, int, int], tuple[Any, ...]] = {}
        self._frames: dict[bytes, bytes] = {}
        # memos by id (the object is held with its result, so ids stay unique)
        self._json: dict[int, tuple[Any, bytes]] = {}           # shared list -> its JSON
        self._filter_jsons: dict[int, tuple[Any, bytes]] = {}   # filter list -> its JSON
        self._sorted: dict[int, tuple[Any, list[int]]] = {}     # shared set -> sorted ids
        self._ids_json: dict[int, tuple[Any, bytes, list[int]]] = {}   # shared sorted ids -> JSON
        self._minus: dict[int, tuple[list[int], list[int], int]] = {}  # a session's list -> (shared, id)
        self._moves: dict[tuple[int, ...], tuple[Any, ...]] = {}
        self._online: dict[int, tuple[Any, ...]] = {}   # shared base -> its OnlineChange (see online_in)

    def intern(self, users: frozenset[int]) -> frozenset[int]:
        return self.mapper.intern_users(users)

    def framed(self, raw: bytes) -> bytes:
        """Identical messages are compressed once per flush; large ones are remembered by a
        digest, so a flush of 10,000 distinct packet filters does not hold them all as keys."""
        key = raw if len(raw) <= 1024 else hashlib.blake2b(raw, digest_size=20).digest()
        msg = self._frames.get(key)
        if msg is None:
            msg = self._frames[key] = frame(raw)
        return msg

    def base_diff(self, old: frozenset[int], new: frozenset[int]) -> tuple[set[int], set[int]]:
        """(added, removed) between two shared bases; computed once per pair per flush."""
        if old is new:
            return set(), set()
        key = (id(old), id(new))
        hit = self._diffs.get(key)
        if hit is None:
            if self.change.policy:
                added, removed = set(new - old), set(old - new)
            else:
                # Without a policy change membership only moves for joined/deleted nodes (a
                # session's base is never older than the previous flush).
                c = self.candidates
                added = {p for p in c if p in new and p not in old}
                removed = {p for p in c if p in old and p not in new}
            hit = self._diffs[key] = (old, new, added, removed)   # the sets held: ids stay unique
        return hit[2], hit[3]

    def extra_diff(self, old: frozenset[int], new: frozenset[int]) -> tuple[frozenset[int], frozenset[int]]:
        """(added, removed) between two extra-peer sets; the policy shares them per user and
        keeps them across compilations when unchanged, so this is once per pair per flush."""
        if old is new:
            return _EMPTY, _EMPTY
        key = (id(old), id(new), 1)
        hit = self._diffs.get(key)
        if hit is None:
            hit = self._diffs[key] = (old, new, new - old, old - new)   # the sets held: ids stay unique
        return hit[2], hit[3]

    def moves(self, old_base: frozenset[int], base: frozenset[int], old_extra: frozenset[int],
              extra: frozenset[int]) -> tuple[frozenset[int], frozenset[int]]:
        """(peers added, peers removed) for a session that was sent (old_base, old_extra) and
        now sees (base, extra), before its own id is taken out: the same for every session in
        that position, so it is worked out once per flush (a policy change can move thousands
        of peers for every session), and the result objects are shared."""
        key = (id(old_base), id(base), id(old_extra), id(extra))
        hit = self._moves.get(key)
        if hit is not None:
            return hit[4], hit[5]
        gone = self.change.peers_removed
        b_added, b_removed = self.base_diff(old_base, base)
        if extra or old_extra:
            e_added, e_removed = self.extra_diff(old_extra, extra)
            cand = b_added | e_added
            now = ((cand & base) | (cand & extra)) - gone
            added = now - ((now & old_base) | (now & old_extra))
            cand = b_removed | e_removed
            before = (cand & old_base) | (cand & old_extra)
            removed = before - (((before & base) | (before & extra)) - gone)
        else:
            added, removed = b_added - gone, set(b_removed)
        nodes = self.mapper.state.nodes
        hit = (old_base, base, old_extra, extra,            # the sets held: ids stay unique
               frozenset(p for p in added if p in nodes), frozenset(removed))
        self._moves[key] = hit
        return hit[4], hit[5]

    def sorted_ids(self, ids: frozenset[int]) -> list[int]:
        """``sorted(ids)``, once per shared set per flush (and its JSON, see _removed_json)."""
        hit = self._sorted.get(id(ids))
        if hit is None:
            hit = self._sorted[id(ids)] = (ids, sorted(ids))
            self._ids_json[id(hit[1])] = (hit[1], encode_json(hit[1]), [])
        return hit[1]

    def online_in(self, base: frozenset[int]) -> tuple[list[int], bytes, list[int]]:
        """The change's online flags of peers in ``base`` that are not resent whole or removed:
        (sorted ids, their OnlineChange JSON, each element's offset in it), once per shared view
        per flush. In a restart storm every session is sent this; those whose own node is in it
        get it cut out of the JSON rather than a dict of thousands built and encoded apiece."""
        hit = self._online.get(id(base))
        if hit is None or hit[0] is not base:
            ch, nodes = self.change, self.mapper.state.nodes
            ids = sorted(p for p in ch.online if p in base and p not in ch.peers_removed
                         and not (p in ch.peers_changed and p in nodes))
            js, starts = _elements([f'"{p}":{"true" if ch.online[p] else "false"}' for p in ids], "{}")
            hit = self._online[id(base)] = (base, ids, js, starts)
        return hit[1], hit[2], hit[3]

    # ---- per session ------------------------------------------------------------------------

    def message(self, session: MapSession) -> bytes | None:
        """The framed delta for ``session`` (or None), updating what it was sent."""
        st = self.mapper.state
        nid = session.node_id
        if nid not in st.nodes:
            return None
        base, extra = st.peer_view(nid)
        ch = self.change
        personal = extra or session.sent_extra or self.routes_move or nid in self.about or ch.dns
        if personal:
            delta = self._delta(session, base, extra, personal=True)
            if delta is None:
                return None
            return self.framed(self._encode(session, delta))
        key = (id(session.sent_base), id(base), id(session.sent_users))
        hit = self._groups.get(key)
        if hit is None:
            old_base, old_users = session.sent_base, session.sent_users
            delta = self._delta(session, base, extra, personal=False)
            msg = None if delta is None else self.framed(self._encode(session, delta))
            hit = self._groups[key] = (old_base, base, old_users, session.sent_users, msg)
            return msg
        session.sent_base = base
        session.sent_users = hit[3]
        return hit[4]

    def _delta(self, session: MapSession, base: frozenset[int], extra: frozenset[int],
               *, personal: bool) -> dict[str, Any] | None:
        mapper, st, ch = self.mapper, self.mapper.state, self.change
        nid = session.node_id
        old_base, old_extra = session.sent_base, session.sent_extra

        def seen_now(p: int) -> bool:
            return p != nid and (p in base or p in extra) and p not in ch.peers_removed

        def seen_before(p: int) -> bool:
            return p != nid and (p in old_base or p in old_extra)

        added, removed = self.moves(old_base, base, old_extra, extra)
        if nid in added:
            added = added - {nid}
        gone_seen = {p for p in ch.peers_removed if seen_before(p)}
        if gone_seen:
            removed = (removed | gone_seen) - {nid}
            removed_ids = sorted(removed)
        elif nid in removed:
            shared_ids = self.sorted_ids(removed)
            removed_ids = shared_ids.copy()
            removed_ids.remove(nid)
            removed = removed - {nid}
            self._minus[id(removed_ids)] = (removed_ids, shared_ids, nid)   # its JSON: cut from the shared one
        elif removed:
            removed_ids = self.sorted_ids(removed)      # shared by every session in this position
        out: dict[str, Any] = {}
        changed = {p for p in ch.peers_changed if p in st.nodes and seen_now(p)} | added
        if ch.policy or self.routes_move:
            # Routers whose usable routes for this viewer moved.
            for p in st.routers:
                if seen_now(p) and p in st.nodes and mapper.routes_for(nid, p) != session.sent_routes.get(p, ()):
                    changed.add(p)
        if changed:
            out["PeersChanged"] = [st.nodes[p] for p in sorted(changed)]
        if removed:
            out["PeersRemoved"] = removed_ids
        patches = [{"NodeID": p, **fields} for p, fields in sorted(ch.patches.items())
                   if p not in changed and seen_now(p)]
        if patches:
            out["PeersChangedPatch"] = patches
        if ch.online:
            if not extra and not (ch.policy or self.routes_move) and added.isdisjoint(ch.online):
                ids, js, starts = self.online_in(base)
                i = bisect_left(ids, nid)
                if i < len(ids) and ids[i] == nid:       # the session's own node: cut it out
                    if len(ids) > 1:
                        out["OnlineChange"] = _OnlineJSON(_without(js, starts, i))
                elif ids:
                    out["OnlineChange"] = _OnlineJSON(js)
            else:
                online = {str(p): v for p, v in ch.online.items() if p not in changed and seen_now(p)}
                if online:
                    out["OnlineChange"] = online
        if personal:
            node = st.nodes[nid]
            caps = st.policy.cap_map(nid) if ch.policy else session.sent_capmap
            if nid in ch.self_changed or caps != session.sent_capmap:
                out["Node"] = mapper.self_node(node, session.capver)
                session.sent_capmap = caps
            if ch.policy:
                rules = st.policy.filter_rules(nid)
                if rules is not session.sent_filter:
                    if rules != session.sent_filter:
                        out["PacketFilters"] = {"base": rules}
                    session.sent_filter = rules   # equal or not: held by identity from now on
                ssh = st.policy.ssh_policy(nid)
                if ssh != session.sent_ssh:
                    out["SSHPolicy"] = ssh if ssh is not None else {"rules": []}
                    session.sent_ssh = ssh
            if ch.dns and st.settings.dns_config != session.sent_dns:
                out["DNSConfig"] = st.settings.dns_config
                session.sent_dns = st.settings.dns_config
        if ch.derp_map:
            out["DERPMap"] = st.derp_map
        session.sent_base, session.sent_extra = base, extra
        if not out:
            return None
        if changed or "Node" in out:
            ids = set(changed) | {nid}
            profiles = [p for p in mapper.profiles(ids) if p["ID"] not in session.sent_users or "Node" in out]
            if profiles:
                out["UserProfiles"] = profiles
                session.sent_users = self.intern(session.sent_users | {p["ID"] for p in profiles})
        return out

    def _encode(self, session: MapSession, delta: dict[str, Any]) -> bytes:
        """Encode a delta; PeersChanged entries reuse the cached peer blobs, PacketFilters the
        flush's encodings of shared filter pieces."""
        peers = delta.pop("PeersChanged", None)
        filters = delta.pop("PacketFilters", None)
        removed = delta.pop("PeersRemoved", None)
        online = delta.pop("OnlineChange") if isinstance(delta.get("OnlineChange"), _OnlineJSON) else None
        delta["ControlTime"] = self.control_time
        if peers is None:
            body = encode_json(delta)
        else:
            body = builder.assemble(delta, "PeersChanged", self.mapper.peer_blobs(session, peers))
        if filters is None and removed is None and online is None:
            return body
        parts = [body[:-1]]
        if removed is not None:
            parts += [b',"PeersRemoved":', self._removed_json(removed)]
        if online is not None:
            parts += [b',"OnlineChange":', online.json]
        if filters is not None:
            parts += [b',"PacketFilters":{"base":', self._filter_json(filters["base"]), b"}"]
        parts.append(b"}")
        return b"".join(parts)

    def _removed_json(self, ids: list[int]) -> bytes:
        """JSON of a PeersRemoved list: shared lists once per flush; a shared list minus the
        session's own id by cutting that element out of the shared JSON."""
        minus = self._minus.pop(id(ids), None)
        if minus is None or minus[0] is not ids:
            hit = self._ids_json.get(id(ids))
            return hit[1] if hit is not None and hit[0] is ids else encode_json(ids)
        _, shared, drop = minus
        hit = self._ids_json.get(id(shared))
        if hit is None or not hit[2]:
            hit = self._ids_json[id(shared)] = (shared, *_elements([str(x) for x in shared], "[]"))
        _, js, starts = hit
        if len(shared) == 1:
            return b"[]"
        return _without(js, starts, bisect_left(shared, drop))

    def _json_of(self, obj: Any) -> bytes:
        """JSON of a list shared by many sessions' messages, once per flush."""
        hit = self._json.get(id(obj))
        if hit is None:
            hit = self._json[id(obj)] = (obj, encode_json(obj))
        return hit[1]

    def _filter_json(self, rules: list[dict[str, Any]]) -> bytes:
        """A packet filter's JSON, from pieces encoded once per flush: filters are shared by
        nodes keeping the same entries, and each node's rules share their SrcIPs lists (a
        policy change about a 3,000-address group re-sends them to every destination)."""
        hit = self._filter_jsons.get(id(rules))
        if hit is None:
            hit = self._filter_jsons[id(rules)] = (rules, b"[" + b",".join(map(self._rule_json, rules)) + b"]")
        return hit[1]

    def _rule_json(self, rule: dict[str, Any]) -> bytes:
        src = rule.get("SrcIPs")
        if src is None:
            return encode_json(rule)
        rest = encode_json({k: v for k, v in rule.items() if k != "SrcIPs"})
        return b'{"SrcIPs":' + self._json_of(src) + (b"}" if rest == b"{}" else b"," + rest[1:])


class _OnlineJSON:
    """An OnlineChange already encoded (Flush.online_in), spliced into the message as is."""

    __slots__ = ("json",)

    def __init__(self, json: bytes) -> None:
        self.json = json


def _elements(texts: list[str], brackets: str) -> tuple[bytes, list[int]]:
    """A JSON array or object of already-encoded elements, and each element's byte offset, so
    one element can be cut out again (``_without``) instead of encoding the rest anew."""
    starts = [1]
    for t in texts[:-1]:
        starts.append(starts[-1] + len(t) + 1)
    return (brackets[0] + ",".join(texts) + brackets[1]).encode(), starts


def _without(js: bytes, starts: list[int], i: int) -> bytes:
    """``js`` (from ``_elements``, two or more elements) without its element ``i``."""
    if i + 1 < len(starts):
        return js[:starts[i]] + js[starts[i + 1]:]
    return js[:starts[i] - 1] + js[-1:]
