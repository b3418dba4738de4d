"""Pre-auth key registrations are group-committed (app/service/admissions.py): a burst is
written in a few transactions, each registration is answered only after its node is
committed, and every decision is the one a lone registration would get (single-use keys,
same machine twice, name collisions, a failing record)."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from app.config import dev_config
from app.service.registration import Registrar
from app.service.state import State
from app.store import Database


@pytest.fixture
async def reg(tmp_path):
    db = await Database.open(str(tmp_path / "db.sqlite"))
    st = State(db, dev_config(str(tmp_path)))
    await st.load()
    try:
        yield Registrar(st)
    finally:
        await db.close()


def _req(i: int, key: str, hostname: str | None = None, **extra) -> dict:
    return {"NodeKey": f"nodekey:{i:064x}", "Auth": {"AuthKey": key},
            "Hostinfo": {"Hostname": hostname or f"host-{i}"}, **extra}


async def _one_batch(reg, calls) -> list:
    """Run the registrations as ONE batch: queue them all while the state lock is held."""
    async with reg.state.lock:
        tasks = [asyncio.ensure_future(c) for c in calls]
        for _ in range(500):
            if len(reg.admissions.queue) == len(tasks):
                break
            await asyncio.sleep(0.01)
        assert len(reg.admissions.queue) == len(tasks)
    return list(await asyncio.gather(*tasks, return_exceptions=True))


async def _key(st, **kw):
    user = st.user_by_name("alice") or await st.create_user("alice")
    kw.setdefault("reusable", True)
    _, full = await st.create_preauth_key(user.id, ephemeral=False, expiration=None, tags=[], **kw)
    return full


async def test_burst_is_committed_in_batches_and_answered_after_commit(reg, tmp_path):
    st = reg.state
    key = await _key(st)
    batches: list[int] = []
    real = st.db.insert_nodes

    async def counting(nodes):
        batches.append(len(nodes))
        return await real(nodes)

    st.db.insert_nodes = counting
    seen_committed = []

    async def one(i):
        out = await reg.register(f"mkey:{i:064x}", _req(i, key))
        assert out.get("MachineAuthorized"), out
        # Answered: the row is already readable by another connection (committed, not pending).
        with sqlite3.connect(tmp_path / "db.sqlite") as other:
            seen_committed.append(other.execute("SELECT COUNT(*) FROM nodes WHERE node_key = ?",
                                                (f"nodekey:{i:064x}",)).fetchone()[0])

    await asyncio.gather(*(one(i) for i in range(60)))
    assert seen_committed == [1] * 60
    assert sum(batches) == 60 and len(batches) < 60 and max(batches) > 1
    assert len(st.nodes) == 60
    assert len({n.ipv4 for n in st.nodes.values()}) == 60
    assert len({n.given_name for n in st.nodes.values()}) == 60
    stored = {n.id: n for n in await st.db.list_nodes()}
    assert stored.keys() == st.nodes.keys()
    assert all(stored[i].ipv4 == n.ipv4 and stored[i].given_name == n.given_name for i, n in st.nodes.items())
    assert (await st.list_preauth_keys())[0].used


async def test_single_use_key_admits_one_node_of_a_burst(reg):
    st = reg.state
    key = await _key(st, reusable=False)
    outs = await _one_batch(reg, [reg.register(f"mkey:{i:064x}", _req(i, key)) for i in range(10)])
    assert sum(1 for o in outs if o.get("MachineAuthorized")) == 1
    assert sorted(o.get("Error", "") for o in outs)[1:] == ["authkey already used"] * 9
    assert len(st.nodes) == 1
    assert (await st.list_preauth_keys())[0].used


async def test_same_machine_twice_in_a_burst_keeps_one_node(reg):
    st = reg.state
    key = await _key(st)
    outs = await _one_batch(reg, [reg.register("mkey:" + "a" * 64, _req(1, key)),
                                  reg.register("mkey:" + "a" * 64, _req(2, key)),
                                  reg.register("mkey:" + "b" * 64, _req(3, key))])
    assert all(o.get("MachineAuthorized") for o in outs), outs
    assert len(st.nodes) == 2
    (mine,) = st.nodes_of_machine("mkey:" + "a" * 64)
    # whichever was admitted second updated the first one's node (ids and addresses kept)
    assert mine.node_key in (f"nodekey:{1:064x}", f"nodekey:{2:064x}")


async def test_same_hostname_in_a_burst_gets_unique_names(reg):
    st = reg.state
    key = await _key(st)
    await _one_batch(reg, [reg.register(f"mkey:{i:064x}", _req(i, key, "same")) for i in range(5)])
    assert sorted(n.given_name for n in st.nodes.values()) == ["same", "same-1", "same-2", "same-3", "same-4"]


async def test_a_failing_record_fails_only_its_own_registration(reg):
    """A record the store cannot write (here: a Hostinfo that is not JSON) fails alone; the
    rest of its batch is retried one by one and committed; its address is released."""
    st = reg.state
    key = await _key(st)
    bad = _req(99, key)
    bad["Hostinfo"]["Unencodable"] = {1, 2}
    outs = await _one_batch(reg, [*(reg.register(f"mkey:{i:064x}", _req(i, key)) for i in range(4)),
                                  reg.register("mkey:" + "9" * 64, bad)])
    assert all(isinstance(o, dict) and o.get("MachineAuthorized") for o in outs[:4]), outs
    assert isinstance(outs[4], Exception) or outs[4].get("Error"), outs[4]
    assert len(st.nodes) == 4 and len(await st.db.list_nodes()) == 4
    out = await reg.register("mkey:" + "8" * 64, _req(8, key))
    assert out.get("MachineAuthorized")
    # the failed registration's addresses were handed back
    assert {str(a) for a in st.v4.used} == {n.ipv4 for n in st.nodes.values()}
    assert {str(a) for a in st.v6.used} == {n.ipv6 for n in st.nodes.values()}
