"""The two database engines behind ``Database``: how a query gets a connection.

| engine   | connections                         | a write is                                       |
|----------|-------------------------------------|--------------------------------------------------|
| SQLite   | one aiosqlite connection + a lock   | ``BEGIN IMMEDIATE`` … ``COMMIT`` under the lock   |
| Postgres | a psycopg_pool ``AsyncConnectionPool`` | one at a time (a lock), a transaction on a pooled connection that first runs the fence (HA lease check); reads run concurrently |

Both hand the query modules a connection with aiosqlite's surface; ``PgConn`` translates
statements with dialect.py. Readers on SQLite also take the lock, so a reader never sees
another coroutine's half-done write; on PostgreSQL transactions give the same guarantee.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from .dialect import POSTGRES, SQLITE, to_postgres


class Engine(Protocol):
    dialect: str

    def read(self) -> Any: ...
    def write(self) -> Any: ...
    async def close(self) -> None: ...


class SqliteEngine:
    dialect = SQLITE

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.lock = asyncio.Lock()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Any]:
        async with self.lock:
            yield self.conn

    @asynccontextmanager
    async def write(self) -> AsyncIterator[Any]:
        async with self.lock:
            # A cancelled await does not stop aiosqlite's thread: a BEGIN (or COMMIT) whose caller
            # was cancelled (stream reset, connection closed) still runs, so the ROLLBACK queued
            # after it must end that transaction too, or every later write finds one open.
            try:
                await self.conn.execute("BEGIN IMMEDIATE")
                yield self.conn
                await self.conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):    # none open: BEGIN failed or COMMIT ran
                    await asyncio.shield(self.conn.execute("ROLLBACK"))
                raise

    async def close(self) -> None:
        async with self.lock:
            await self.conn.close()


@dataclass
class PgResult:
    rowcount: int
    lastrowid: int | None


class PgConn:
    """A pooled psycopg AsyncConnection with aiosqlite's query surface."""

    dialect = POSTGRES

    def __init__(self, raw: Any, trace: Callable[[str], None] | None = None) -> None:
        self.raw = raw
        self.trace = trace  # database.debug: each statement (placeholders only, never values)

    def _sql(self, sql: str) -> tuple[str, bool]:
        text, returning = to_postgres(sql)
        if self.trace is not None:
            self.trace(text)
        return text, returning

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> PgResult:
        text, returning = self._sql(sql)
        async with self.raw.cursor() as cur:
            await cur.execute(text, tuple(params))
            lastrowid = None
            if returning:
                row = await cur.fetchone()
                lastrowid = int(row[0]) if row else None
            return PgResult(cur.rowcount, lastrowid)

    async def execute_fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[Any]:
        text, _ = self._sql(sql)
        async with self.raw.cursor() as cur:
            await cur.execute(text, tuple(params))
            return await cur.fetchall()

    async def executemany(self, sql: str, rows: Iterable[Iterable[Any]]) -> None:
        text, _ = self._sql(sql)
        async with self.raw.cursor() as cur:
            await cur.executemany(text, [tuple(r) for r in rows])


Fence = Callable[[PgConn], Awaitable[None]]


class PostgresEngine:
    dialect = POSTGRES

    def __init__(self, pool: Any, trace: Callable[[str], None] | None = None) -> None:
        self.pool = pool
        self.trace = trace
        # Runs first in every write transaction; raises to refuse the write (ha.Lease.check).
        self.fence: Fence | None = None
        # Writes commit in the order they were asked for, as on SQLite: the state in memory
        # follows the database, and two updates of one node must not land in reverse order.
        # (With HA the lease's per-epoch counter serialises writes in the database anyway.)
        self.write_lock = asyncio.Lock()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[PgConn]:
        async with self.pool.connection() as raw:
            yield PgConn(raw, self.trace)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[PgConn]:
        async with self.write_lock, self.pool.connection() as raw, raw.transaction():
            conn = PgConn(raw, self.trace)
            if self.fence is not None:
                await self.fence(conn)
            yield conn

    async def close(self) -> None:
        await self.pool.close()
