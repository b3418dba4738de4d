"""Presence-only flushes are paced by what the previous flush cost; other changes are not.

A restart storm is thousands of nodes coming online: each is a presence change for every
connected session. The batcher holds a change that is presence alone until S x
PRESENCE_PER_MESSAGE after a flush of S messages; a change of anything else goes out at the
usual tick and carries the held presence with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random

from app.core.map.wire import FrameReader
from app.service.changes import Change
from app.service.sessions import PRESENCE_PER_MESSAGE, Batcher, MapSession
from tests.service.test_map_model import Model
from tests.service.test_storm_chunks import _world

SESSIONS = 300


async def _next_message(session: MapSession, timeout: float = 5.0) -> tuple[float, dict]:
    item = await asyncio.wait_for(session.queue.get(), timeout)
    msgs = FrameReader().receive_data(item)
    assert len(msgs) == 1
    return asyncio.get_running_loop().time(), json.loads(json.dumps(msgs[0]))


async def test_presence_waits_for_its_turn_other_changes_do_not(tmp_path):
    db, st, mapper, batcher = await _world(tmp_path)
    batcher = Batcher(st, mapper, 0.005)    # a 5 ms tick, as a small tailnet would use
    st.listeners[:] = [batcher.add]
    task = asyncio.create_task(batcher.run())
    try:
        m = Model(st, mapper, batcher, random.Random(1))
        ids = [(await m.join()).id for _ in range(SESSIONS + 3)]
        sessions = []
        for nid in ids[:SESSIONS]:
            s = MapSession(nid, 130)
            batcher.attach(s)
            st.set_online(nid, True)
            mapper.full_map_frame(s)
            sessions.append(s)
        watcher = sessions[0]

        async def others_write() -> None:    # the other streams keep up (no backlog to wait for)
            while True:
                for s in sessions[1:]:
                    while not s.queue.empty():
                        s.queue.get_nowait()
                await asyncio.sleep(0.001)

        drain = asyncio.create_task(others_write())
        # the joins above are flushed (one message per session); drain what the watcher got
        await asyncio.sleep(0.3)
        while not watcher.queue.empty():
            watcher.queue.get_nowait()
        loop = asyncio.get_running_loop()

        st._emit(Change(patches={ids[4]: {"Endpoints": ["192.0.2.8:1"]}}))   # a flush of ~300
        t0, msg = await _next_message(watcher)
        assert msg["PeersChangedPatch"][0]["NodeID"] == ids[4]
        st.set_online(ids[-1], True)        # presence alone, right after it: waits its turn
        at, msg = await _next_message(watcher)
        assert msg["OnlineChange"] == {str(ids[-1]): True}
        assert at - t0 >= SESSIONS * PRESENCE_PER_MESSAGE * 0.8, at - t0

        t0 = loop.time()
        st.set_online(ids[-2], True)        # held ...
        await asyncio.sleep(0.02)
        st._emit(Change(patches={ids[5]: {"Endpoints": ["192.0.2.9:1"]}}))   # ... until this
        at, msg = await _next_message(watcher)
        assert at - t0 < SESSIONS * PRESENCE_PER_MESSAGE * 0.8, at - t0
        assert msg["OnlineChange"] == {str(ids[-2]): True}
        assert msg["PeersChangedPatch"] == [{"NodeID": ids[5], "Endpoints": ["192.0.2.9:1"]}]
        drain.cancel()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await db.close()


async def test_a_flush_of_presence_cuts_each_sessions_own_node_out(tmp_path):
    """Sessions whose own node is in a presence flush get the shared OnlineChange with
    themselves cut out (never naming themselves); the others get it whole; all equal a dict
    built per session."""
    db, st, mapper, batcher = await _world(tmp_path)
    try:
        m = Model(st, mapper, batcher, random.Random(4))
        ids = [(await m.join()).id for _ in range(30)]
        batcher.flush()                                 # the joins: before any session
        sessions = {}
        for nid in ids[:20]:
            s = MapSession(nid, 130)
            batcher.attach(s)
            mapper.full_map_frame(s)
            sessions[nid] = s
        flipped = [ids[0], ids[7], ids[19], ids[25]]   # first, middle, last of the sessions, one without
        for p in flipped:
            st.set_online(p, True)
        batcher.flush()
        for nid, s in sessions.items():
            msgs = FrameReader().receive_data(s.queue.get_nowait())
            got = json.loads(json.dumps(msgs[0]))["OnlineChange"]
            assert got == {str(p): True for p in flipped if p != nid}, nid
    finally:
        await db.close()
