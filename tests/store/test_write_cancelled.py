"""A write cancelled at any await (its request's stream was reset, its connection closed) leaves
no transaction open: the next write works. Found by the soak (bench/soak.py): a map stream
cancelled while its last-seen write waited for BEGIN left SQLite inside a transaction, and every
later write on the server failed with "cannot start a transaction within a transaction"."""

from __future__ import annotations

import asyncio

import pytest

from app.store import Database


@pytest.mark.parametrize("steps", [0, 1, 2, 3, 4, 5, 6])
async def test_a_write_cancelled_at_any_point_leaves_no_open_transaction(tmp_path, steps):
    db = await Database.open(str(tmp_path / "db.sqlite"))
    try:
        async def write() -> None:
            async with db._write() as conn:
                await conn.execute("INSERT INTO users (name, created_at, updated_at) VALUES ('x', 0, 0)")

        task = asyncio.create_task(write())
        for _ in range(steps):      # cancel it at a different await each time
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        user = await asyncio.wait_for(db.create_user("after"), 10)
        assert user.name == "after"
        assert not db._engine.conn.in_transaction
    finally:
        await db.close()
