"""What every query module relies on: an engine (engine.py) and one clock.

Query modules are mixins over ``QueryBase``; ``db.Database`` combines them. ``_read()`` and
``_write()`` hand out a connection with aiosqlite's surface (``execute`` → cursor with
``lastrowid``/``rowcount``, ``execute_fetchall``, ``executemany``) whichever engine runs
underneath; SQL is written once (dialect.py). Each mutating query commits its own
transaction, rolled back on any error; on PostgreSQL every write also checks the HA lease
(fencing, ha.py) before it may commit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from app.core.clock import Clock

from .dialect import INTEGRITY_ERRORS
from .engine import Engine
from .errors import Conflict, Invalid, NotFound, StoreError

IntegrityErrors = INTEGRITY_ERRORS


class QueryBase:
    _engine: Engine
    clock: Clock

    def _now(self) -> datetime:
        return self.clock.now()

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[Any]:
        async with self._engine.read() as conn:
            yield conn

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[Any]:
        async with self._engine.write() as conn:
            yield conn

    async def _fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[Any]:
        async with self._read() as conn:
            return list(await conn.execute_fetchall(sql, tuple(params)))

    async def _fetchone(self, sql: str, params: Iterable[Any] = ()) -> Any:
        rows = await self._fetchall(sql, params)
        return rows[0] if rows else None


def integrity_error(exc: BaseException, entity: str) -> StoreError:
    """Translate a constraint failure (either engine) into a domain error."""
    text = str(exc)
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate == "23505":  # PostgreSQL unique_violation
        diag = getattr(exc, "diag", None)
        what = getattr(diag, "constraint_name", "") or ""
        return Conflict(f"{entity.replace('_', ' ')} already exists ({what})", entity=entity)
    if sqlstate == "23503":  # foreign_key_violation
        return NotFound(f"{entity.replace('_', ' ')} refers to a record that does not exist", entity=entity)
    if text.startswith("UNIQUE constraint failed"):
        what = text.split(":", 1)[1].strip() if ":" in text else ""
        return Conflict(f"{entity.replace('_', ' ')} already exists ({what})", entity=entity)
    if "FOREIGN KEY" in text:
        return NotFound(f"{entity.replace('_', ' ')} refers to a record that does not exist", entity=entity)
    return Invalid(f"{entity.replace('_', ' ')}: {text}", entity=entity)
