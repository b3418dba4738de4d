"""The Database: headscale 0.29's layout on SQLite (one aiosqlite connection) or PostgreSQL
(a psycopg_pool pool; ``Database.open_postgres``). Engines: engine.py; SQL dialects:
dialect.py.

``await Database.open(path)`` creates the file if needed, migrates it (migrate.py, in a worker
thread, before the async connection exists) and sets the connection up for WAL + Litestream:

| PRAGMA        | value  | why                                                        |
|---------------|--------|------------------------------------------------------------|
| busy_timeout  | 10000  | Litestream checkpoints and reads the file concurrently     |
| journal_mode  | WAL    | Litestream replicates the WAL; readers never block writers |
| synchronous   | FULL   | every COMMIT syncs the WAL: an acknowledged write survives a power loss |
| foreign_keys  | ON     | ON DELETE CASCADE / SET NULL as headscale expects          |

On SQLite, one writer: every query holds the Database's lock, and each write is its own
``BEGIN IMMEDIATE … COMMIT``. Litestream's ``_litestream_seq`` / ``_litestream_lock`` tables are
never touched.
"""

from __future__ import annotations

import asyncio

import aiosqlite

from app.core.clock import Clock, SystemClock

from . import sqllog
from .api_keys import ApiKeyQueries
from .dialect import POSTGRES
from .engine import Engine, PostgresEngine, SqliteEngine
from .errors import Invalid
from .migrate import MigrationReport, migrate_path, migrate_postgres
from .nodes import NodeQueries
from .policy import PolicyQueries
from .preauth_keys import PreAuthKeyQueries
from .users import UserQueries

BUSY_TIMEOUT_MS = 10_000
# FULL, not NORMAL: with WAL, NORMAL syncs only at checkpoints, so a power loss (not a process
# crash) could lose registrations, keys or a policy a client was already told were saved.
# Measured cost (python -m bench.durability_bench): one commit ~0.4 -> ~0.6-1.4 ms on this
# machine's ext4 disk, registrations/s unchanged within noise (they are CPU-bound).
SYNCHRONOUS = "FULL"


class Database(UserQueries, NodeQueries, PreAuthKeyQueries, ApiKeyQueries, PolicyQueries):
    def __init__(self, engine: Engine, path: str, clock: Clock, report: MigrationReport) -> None:
        self._engine = engine
        if isinstance(engine, SqliteEngine):
            self._conn = engine.conn
            self._lock = engine.lock
        self.path = path  # the SQLite file, or the PostgreSQL target without its password
        self.clock = clock
        self.migration_report = report

    @property
    def dialect(self) -> str:
        return self._engine.dialect

    @classmethod
    async def open(cls, path: str, *, clock: Clock | None = None, policy: str | None = None,
                   sql_debug: bool = False) -> Database:
        """Open (creating and migrating as needed). ``policy`` is the policy file's text when
        the policy lives in a file, for the one migration that reads it. ``path`` must be a
        file: migration runs on its own connection first, which ``:memory:`` cannot share.
        ``sql_debug`` (``database.debug``) logs every statement, literals redacted (sqllog.py)."""
        if path == ":memory:" or path.startswith("file::memory:"):
            raise Invalid("Database.open needs a file path, not an in-memory database", entity="database")
        report = await asyncio.to_thread(migrate_path, path, policy=policy)
        conn = await aiosqlite.connect(path, isolation_level=None)
        try:
            await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            await conn.execute("PRAGMA journal_mode = WAL")
            await conn.execute(f"PRAGMA synchronous = {SYNCHRONOUS}")
            await conn.execute("PRAGMA foreign_keys = ON")
            if sql_debug:
                await conn.set_trace_callback(sqllog.trace)
        except BaseException:
            await conn.close()
            raise
        return cls(SqliteEngine(conn), path, clock or SystemClock(), report)

    @classmethod
    async def open_postgres(
        cls,
        conninfo: str,
        *,
        clock: Clock | None = None,
        policy: str | None = None,
        max_open: int = 10,
        max_idle: int = 10,
        idle_seconds: float = 3600,
        timeout: float = 10.0,
        display: str = "",
        sql_debug: bool = False,
    ) -> Database:
        """Open a PostgreSQL database (libpq ``conninfo`` string or URL), migrating it first on
        one connection of its own. Pool: at most ``max_open`` connections, ``max_idle`` kept
        open, others closed after ``idle_seconds`` idle (headscale's max_open_conns,
        max_idle_conns, conn_max_idle_time_secs). ``sql_debug`` (``database.debug``) logs every
        statement as sent, with placeholders (sqllog.py)."""
        from psycopg_pool import AsyncConnectionPool

        report = await asyncio.to_thread(migrate_postgres, conninfo, policy=policy)
        max_open = max(1, max_open)
        pool = AsyncConnectionPool(
            conninfo, min_size=max(1, min(max_idle, max_open)), max_size=max_open,
            max_idle=max(1.0, float(idle_seconds)), timeout=timeout, open=False,
            kwargs={"autocommit": True, "application_name": "headscale"},
        )
        try:
            await pool.open(wait=True, timeout=timeout)
        except BaseException:
            await pool.close()
            raise
        engine = PostgresEngine(pool, trace=sqllog.trace if sql_debug else None)
        return cls(engine, display or "postgres", clock or SystemClock(), report)

    async def close(self) -> None:
        await self._engine.close()

    async def ping(self) -> bool:
        """True when the database answers (for the health endpoint)."""
        try:
            row = await self._fetchone("SELECT 1")
        except Exception:  # noqa: BLE001 - any failure means "not healthy"
            return False
        return bool(row and row[0] == 1)

    async def checkpoint(self) -> None:
        """Fold the WAL into the main file (before copying the file elsewhere); nothing to do
        on PostgreSQL."""
        if self.dialect == POSTGRES:
            return
        async with self._read() as conn:
            await conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
