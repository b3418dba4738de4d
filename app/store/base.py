"""What every query module relies on: one connection, one lock, one clock.

Query modules are mixins over ``QueryBase``; ``db.Database`` combines them. Every public
query is a coroutine that holds the lock for its whole run, so a reader never sees another
coroutine's half-done write; each mutating query commits its own transaction
(``BEGIN IMMEDIATE … COMMIT``, rolled back on any error).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import aiosqlite

from app.core.clock import Clock

from .errors import Conflict, Invalid, NotFound, StoreError


class QueryBase:
    _conn: aiosqlite.Connection
    _lock: asyncio.Lock
    clock: Clock

    def _now(self) -> datetime:
        return self.clock.now()

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            yield self._conn

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                await asyncio.shield(self._conn.execute("ROLLBACK"))
                raise
            await self._conn.execute("COMMIT")

    async def _fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[Any]:
        async with self._read() as conn:
            return list(await conn.execute_fetchall(sql, tuple(params)))

    async def _fetchone(self, sql: str, params: Iterable[Any] = ()) -> Any:
        rows = await self._fetchall(sql, params)
        return rows[0] if rows else None


def integrity_error(exc: sqlite3.IntegrityError, entity: str) -> StoreError:
    """Translate a constraint failure into a domain error."""
    text = str(exc)
    if text.startswith("UNIQUE constraint failed"):
        what = text.split(":", 1)[1].strip() if ":" in text else ""
        return Conflict(f"{entity.replace('_', ' ')} already exists ({what})", entity=entity)
    if "FOREIGN KEY" in text:
        return NotFound(f"{entity.replace('_', ' ')} refers to a record that does not exist", entity=entity)
    return Invalid(f"{entity.replace('_', ' ')}: {text}", entity=entity)
