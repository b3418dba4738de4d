"""The HA lease on a real PostgreSQL: one holder at a time, fencing of every write, loss when the
lock's session ends."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from app.store import Database
from app.store.ha import Lease, LeaseLost


@pytest.fixture
def pg_url(postgres):
    name = postgres.create_database("ha", template=postgres.migrated_template())
    yield postgres.url(name)
    postgres.drop_database(name)


async def open_fenced(url: str, lease: Lease) -> Database:
    db = await Database.open_postgres(url, max_open=2, max_idle=1)
    db._engine.fence = lease.check
    return db


def epochs(url: str) -> list[tuple]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute("SELECT epoch, holder, started_at, writes, last_write_at"
                            " FROM pyheadscale_ha_epochs ORDER BY epoch").fetchall()


def terminate_lease_session(url: str, holder_app: str = "headscale-ha-lease") -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT a.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted AND a.application_name = %s", (holder_app,)).fetchall()
        for (pid,) in rows:
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        return len(rows)


async def acquire_within(lease: Lease, seconds: float) -> bool:
    """What a standby does: try every 0.1 s (a terminated backend releases its lock when it has
    actually exited, a moment after pg_terminate_backend returns)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        if await lease.try_acquire():
            return True
        await asyncio.sleep(0.1)
    return False


async def test_one_holder_and_fenced_writes_after_a_takeover(pg_url):
    lost: list[str] = []
    first = Lease(pg_url, "first", on_lost=lost.append)
    second = Lease(pg_url, "second")
    db = None
    try:
        assert await first.try_acquire() and first.epoch == 1
        assert not await second.try_acquire()  # the lock is held
        assert await second.current() == (1, "first")
        db = await open_fenced(pg_url, first)
        await db.create_user("alice")
        assert await first.heartbeat()

        # The first holder's lock session ends (what a dead process or a partition looks like).
        assert terminate_lease_session(pg_url) == 1
        assert await acquire_within(second, 5.0) and second.epoch == 2
        # The first holder has not noticed yet: its pool is fine, but the fence refuses the write.
        with pytest.raises(LeaseLost):
            await db.create_user("bob")
        assert lost and "epoch 2" in lost[0]
        assert [u.name for u in await db.list_users()] == ["alice"]
        assert not await first.heartbeat() and not await first.try_acquire()  # deposed for good
        rows = epochs(pg_url)
        assert [(r[0], r[1], r[3]) for r in rows] == [(1, "first", 1), (2, "second", 0)]
        assert rows[0][4] < rows[1][2]  # epoch 1 never wrote after epoch 2 began
    finally:
        if db is not None:
            await db.close()
        await first.close()
        await second.close()


async def test_heartbeat_notices_a_killed_lock_session(pg_url):
    lost: list[str] = []
    lease = Lease(pg_url, "only", on_lost=lost.append)
    try:
        assert await lease.try_acquire()
        assert await lease.heartbeat()
        terminate_lease_session(pg_url)
        assert not await lease.heartbeat()
        assert lost and "connection failed" in lost[0]
    finally:
        await lease.close()


async def test_the_next_holder_gets_the_next_epoch_after_a_clean_release(pg_url):
    a = Lease(pg_url, "a")
    assert await a.try_acquire()
    await a.close()  # session ends: lock released
    b = Lease(pg_url, "b")
    try:
        assert await acquire_within(b, 5.0) and b.epoch == 2
    finally:
        await b.close()
