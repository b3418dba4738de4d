"""The Database: one aiosqlite connection to a headscale-0.29-layout SQLite file.

``await Database.open(path)`` creates the file if needed, migrates it (migrate.py, in a worker
thread, before the async connection exists) and sets the connection up for WAL + Litestream:

| PRAGMA        | value  | why                                                        |
|---------------|--------|------------------------------------------------------------|
| busy_timeout  | 10000  | Litestream checkpoints and reads the file concurrently     |
| journal_mode  | WAL    | Litestream replicates the WAL; readers never block writers |
| synchronous   | NORMAL | durable at checkpoints; safe with WAL                      |
| foreign_keys  | ON     | ON DELETE CASCADE / SET NULL as headscale expects          |

One writer: every query holds the Database's lock, and each write is its own
``BEGIN IMMEDIATE … COMMIT``. Litestream's ``_litestream_seq`` / ``_litestream_lock`` tables are
never touched.
"""

from __future__ import annotations

import asyncio

import aiosqlite

from app.core.clock import Clock, SystemClock

from .api_keys import ApiKeyQueries
from .errors import Invalid
from .migrate import MigrationReport, migrate_path
from .nodes import NodeQueries
from .policy import PolicyQueries
from .preauth_keys import PreAuthKeyQueries
from .users import UserQueries

BUSY_TIMEOUT_MS = 10_000


class Database(UserQueries, NodeQueries, PreAuthKeyQueries, ApiKeyQueries, PolicyQueries):
    def __init__(self, conn: aiosqlite.Connection, path: str, clock: Clock, report: MigrationReport) -> None:
        self._conn = conn
        self._lock = asyncio.Lock()
        self.path = path
        self.clock = clock
        self.migration_report = report

    @classmethod
    async def open(cls, path: str, *, clock: Clock | None = None, policy: str | None = None) -> Database:
        """Open (creating and migrating as needed). ``policy`` is the policy file's text when
        the policy lives in a file, for the one migration that reads it. ``path`` must be a
        file: migration runs on its own connection first, which ``:memory:`` cannot share."""
        if path == ":memory:" or path.startswith("file::memory:"):
            raise Invalid("Database.open needs a file path, not an in-memory database", entity="database")
        report = await asyncio.to_thread(migrate_path, path, policy=policy)
        conn = await aiosqlite.connect(path, isolation_level=None)
        try:
            await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            await conn.execute("PRAGMA journal_mode = WAL")
            await conn.execute("PRAGMA synchronous = NORMAL")
            await conn.execute("PRAGMA foreign_keys = ON")
        except BaseException:
            await conn.close()
            raise
        return cls(conn, path, clock or SystemClock(), report)

    async def close(self) -> None:
        async with self._lock:
            await self._conn.close()

    async def ping(self) -> bool:
        """True when the database answers (for the health endpoint)."""
        try:
            row = await self._fetchone("SELECT 1")
        except Exception:  # noqa: BLE001 - any failure means "not healthy"
            return False
        return bool(row and row[0] == 1)

    async def checkpoint(self) -> None:
        """Fold the WAL into the main file (before copying the file elsewhere)."""
        async with self._read() as conn:
            await conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
