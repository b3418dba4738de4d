"""Fixtures for the store tests: a fresh database on a fake clock, and dump loading."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.core.clock import FakeClock
from app.store import Database

ROOT = Path(__file__).resolve().parents[2]
DUMPS = ROOT.parent / "shared" / "testdata" / "headscale-sqlite"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def dump_paths() -> list[Path]:
    return sorted(DUMPS.glob("*.sql"))


def load_dump(dump: Path | str, target: Path) -> Path:
    """Build a SQLite file from a plain-text dump, as `sqlite3 db < dump.sql` would."""
    dump = DUMPS / dump if isinstance(dump, str) else dump
    conn = sqlite3.connect(target)
    try:
        conn.executescript(dump.read_text())
    finally:
        conn.close()
    return target


def sql_dump(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request) -> str:
    return request.param


@pytest.fixture
async def db(tmp_path: Path, clock: FakeClock, engine: str, request):
    """A fresh, migrated database on each engine (PostgreSQL: a new database in the session's
    cluster)."""
    if engine == "sqlite":
        database = await Database.open(str(tmp_path / "db.sqlite"), clock=clock)
        try:
            yield database
        finally:
            await database.close()
        return
    cluster = request.getfixturevalue("postgres")
    name = cluster.create_database(template=cluster.migrated_template())
    database = await Database.open_postgres(cluster.url(name), clock=clock, max_open=4, max_idle=1)
    try:
        yield database
    finally:
        await database.close()
        cluster.drop_database(name)


@pytest.fixture
async def sqlite_db(tmp_path: Path, clock: FakeClock):
    """For tests about the SQLite file itself (pragmas, file layout)."""
    database = await Database.open(str(tmp_path / "db.sqlite"), clock=clock)
    try:
        yield database
    finally:
        await database.close()
