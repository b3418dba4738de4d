"""A restart storm in process: every node reconnects, one after another, while the others stay.

Coming online does not invalidate cached peer chunks; a map built from a chunk that predates
a peer's reconnect is followed by an OnlineChange for that peer. Checked here: the chunks are
compressed a bounded number of times (not once per map per chunk), and every session's state
after draining equals a map computed from scratch (tests/service/test_map_model.py's oracle).
"""

from __future__ import annotations

import json
import random

from app.core.map.chunks import CHUNK_BITS
from app.core.map.wire import FrameReader
from app.service.mapper import STALE_ONLINE
from app.service.sessions import MapSession
from tests.service.test_map_model import Model, world

NODES = 400          # four chunks of 128 (the last one partly filled)


async def _world(tmp_path):
    return await world(tmp_path, "storm.internal")


async def test_storm_reuses_chunks_and_sessions_stay_exact(tmp_path):
    db, st, mapper, batcher = await _world(tmp_path)
    try:
        m = Model(st, mapper, batcher, random.Random(3))
        for i in range(NODES):
            await m.join(tagged=i % 9 == 0)
        batcher.flush()
        order = sorted(st.nodes)
        random.Random(4).shuffle(order)
        followups = 0
        for k, nid in enumerate(order):
            m.connect(nid)
            followups += m.clients[nid].messages - 1
            if k % 40 == 39:               # the batcher's tick: others learn of the reconnects
                batcher.flush()
                m.drain()
        batcher.flush()
        m.drain()
        m.check()
        chunks = (max(st.nodes) >> CHUNK_BITS) + 1
        # Without reuse this is ~NODES x chunks (1,600); each chunk is rebuilt about once per
        # STALE_ONLINE reconnects among its 128 members, its 8 sub-chunks (for viewers inside
        # it) about once.
        assert mapper.chunks_built <= chunks * (128 // STALE_ONLINE + 16), mapper.chunks_built
        assert followups > NODES // 2, followups   # most maps came with an OnlineChange
        assert all(p["Online"] for c in m.clients.values() for p in c.peers.values())
    finally:
        await db.close()


async def test_followup_names_exactly_the_peers_that_came_online(tmp_path):
    db, st, mapper, batcher = await _world(tmp_path)
    try:
        m = Model(st, mapper, batcher, random.Random(5))
        ids = [(await m.join()).id for _ in range(40)]
        viewer = ids[-1]              # another sub-chunk than the peers below: theirs is cached
        mapper.full_map_frame(MapSession(viewer, 130))          # caches the chunk: all offline
        for p in ids[1:4]:
            st.set_online(p, True)
        msgs = FrameReader().receive_data(mapper.full_map_frame(MapSession(viewer, 130)))
        assert len(msgs) == 2
        assert {p["ID"]: p["Online"] for p in msgs[0]["Peers"]}[ids[1]] is False   # the cached frame
        assert msgs[1]["OnlineChange"] == {str(p): True for p in ids[1:4]}
        assert "Peers" not in msgs[1] and msgs[1]["ControlTime"] == msgs[0]["ControlTime"]
        # exact (one-shot answers): one message, rebuilt with the current flags
        exact = FrameReader().receive_data(mapper.full_map_frame(MapSession(viewer, 130), exact=True))
        assert len(exact) == 1
        online = {p["ID"]: p["Online"] for p in exact[0]["Peers"]}
        assert [online[p] for p in ids[1:5]] == [True, True, True, False]
        # going offline moves the record (LastSeen): the chunk is rebuilt, no follow-up
        st.set_online(ids[2], False)
        again = FrameReader().receive_data(mapper.full_map_frame(MapSession(viewer, 130)))
        assert len(again) == 1
        assert {p["ID"]: p["Online"] for p in again[0]["Peers"]}[ids[2]] is False
        assert json.loads(json.dumps(again[0]))["Peers"]
    finally:
        await db.close()


def _applied(msgs: list[dict]) -> dict:
    """A full map with the OnlineChange that may follow it applied, as a client would."""
    full = json.loads(json.dumps(msgs[0]))
    for extra in msgs[1:]:
        assert set(extra) == {"OnlineChange", "ControlTime"}, extra
        for p in full.get("Peers") or []:
            if str(p["ID"]) in extra["OnlineChange"]:
                p["Online"] = extra["OnlineChange"][str(p["ID"])]
    full.pop("ControlTime")
    return full


async def test_maps_cut_from_the_shared_run_equal_exact_maps(tmp_path):
    """Viewers first, last, in the middle of a chunk, and alone in theirs: a map cut from the
    joined run (plus its follow-up) decodes to exactly the map built without caches."""
    db, st, mapper, batcher = await _world(tmp_path)
    try:
        m = Model(st, mapper, batcher, random.Random(9))
        ids = [(await m.join()).id for _ in range(300)]
        lonely = ids[200]                      # alone in its chunk of 128 ids once the rest go
        for p in ids:
            if (p >> CHUNK_BITS) == (lonely >> CHUNK_BITS) and p != lonely:
                async with st.lock:
                    await st.remove_node(p)
        live = sorted(st.nodes)
        viewers = [live[0], live[1], live[60], lonely, live[-1], live[-2]]
        rng = random.Random(2)
        for step in range(6):
            for p in rng.sample(live, 7):      # a few reconnects between maps
                st.set_online(p, True)
            if step == 3:
                st.set_online(live[5], False)   # a record moves: the run is joined again
            for v in viewers:
                cut = FrameReader().receive_data(mapper.full_map_frame(MapSession(v, 130)))
                exact = FrameReader().receive_data(mapper.full_map_frame(MapSession(v, 130), exact=True))
                assert len(exact) == 1
                want = _applied(exact)
                assert _applied(cut) == want, (step, v)
                assert len(want["Peers"]) == len(live) - 1
        assert mapper._runs, "the shared run was used"
    finally:
        await db.close()
