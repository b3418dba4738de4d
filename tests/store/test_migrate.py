"""Migration machinery: fresh files, our own append-only migrations, failure leaves the file
unchanged, refusals, Litestream's tables, and headscale steps on synthetic data."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from app.store import Database, MigrationError, migrate_file
from app.store.migrate import HEADSCALE_VERSION, connect, detect, migrate
from app.store.migrations import Migration, headscale_migrations, load_own
from app.store.migrations.headscale import clean_identifier
from app.store.migrations.request_tags import hujson_to_json
from app.store.schema import layout_diff

from .conftest import load_dump, sql_dump


def file_bytes(path: Path) -> dict[str, bytes]:
    """The database file and any -wal / -journal next to it."""
    return {p.name: p.read_bytes() for p in sorted(path.parent.glob(path.name + "*"))}


def failing(conn: sqlite3.Connection, ctx) -> None:
    conn.execute("CREATE TABLE half_done (x)")
    conn.execute("INSERT INTO users (name) VALUES ('ghost')")
    raise RuntimeError("boom")


def test_fresh_file_gets_the_headscale_layout(tmp_path):
    path = tmp_path / "sub" / "db.sqlite"
    migrate_file(str(path))
    conn = sqlite3.connect(path)
    assert layout_diff(conn) == []
    ids = [r[0] for r in conn.execute("SELECT id FROM migrations")]
    assert ids[0] == "SCHEMA_INIT"
    assert {m.id for m in headscale_migrations()} <= set(ids)
    assert "pyheadscale-0001-baseline" in ids
    assert conn.execute("SELECT version FROM database_versions").fetchall() == [(HEADSCALE_VERSION,)]


def test_detect_labels(tmp_path):
    conn = connect(str(tmp_path / "a.sqlite"))
    assert detect(conn) == "fresh"
    migrate(conn)
    assert detect(conn) == "pyheadscale"
    conn2 = sqlite3.connect(load_dump("headscale_0.26.1_dump.sql", tmp_path / "b.sqlite"))
    assert detect(conn2) == "headscale-0.26"


def test_own_migrations_are_loaded_in_number_order(tmp_path):
    (tmp_path / "0002_second.sql").write_text("CREATE TABLE t2 (x);\n-- note\nINSERT INTO t2 VALUES (1);\n")
    (tmp_path / "0001_first.py").write_text(
        "def migrate(conn):\n    conn.execute('CREATE TABLE t1 (x)')\n")
    (tmp_path / "README.txt").write_text("ignored")
    own = load_own(tmp_path)
    assert [m.id for m in own] == ["pyheadscale-0001-first", "pyheadscale-0002-second"]
    conn = connect(str(tmp_path / "db.sqlite"))
    report = migrate(conn, own=own)
    assert report.applied[-2:] == ("pyheadscale-0001-first", "pyheadscale-0002-second")
    assert conn.execute("SELECT x FROM t2").fetchall() == [(1,)]
    # running again: nothing pending; the layout check includes our tables
    assert migrate(conn, own=own).applied == ()


def test_failed_migration_leaves_a_headscale_file_unchanged(tmp_path):
    path = load_dump("request_tags_migration_test.sql", tmp_path / "db.sqlite")
    before = file_bytes(path)
    dump_before = sql_dump(path)
    with pytest.raises(MigrationError, match="boom"):
        migrate_with(path, own=[Migration("pyheadscale-9999-fails", failing)])
    assert file_bytes(path) == before
    assert sql_dump(path) == dump_before


def test_failed_migration_leaves_our_wal_file_unchanged(tmp_path, clock):
    path = tmp_path / "db.sqlite"

    async def build():
        db = await Database.open(str(path), clock=clock)
        await db.create_user("alice")
        await db.checkpoint()
        await db.close()

    import asyncio

    asyncio.run(build())
    before = file_bytes(path)
    own = [*load_own(), Migration("pyheadscale-0002-ok", lambda c, x: c.execute("CREATE TABLE ok (x)")),
           Migration("pyheadscale-0003-fails", failing)]
    with pytest.raises(MigrationError):
        migrate_with(path, own=own)
    assert file_bytes(path) == before
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT name FROM users").fetchall() == [("alice",)]
    assert conn.execute("SELECT 1 FROM sqlite_master WHERE name IN ('ok', 'half_done')").fetchall() == []


async def test_open_raises_and_keeps_the_file_when_a_migration_fails(tmp_path, monkeypatch):
    path = load_dump("headscale_0.26.1_dump.sql", tmp_path / "db.sqlite")
    before = file_bytes(path)
    from app.store import migrate as migrate_mod

    monkeypatch.setattr(migrate_mod, "load_own", lambda: (Migration("pyheadscale-0001-baseline", failing),))
    with pytest.raises(MigrationError):
        await Database.open(str(path))
    assert file_bytes(path) == before


def migrate_with(path: Path, **kw):
    conn = connect(str(path))
    try:
        return migrate(conn, **kw)
    finally:
        conn.close()


def test_layout_mismatch_is_refused(tmp_path):
    path = tmp_path / "db.sqlite"
    migrate_file(str(path))
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE extra (x)")
    conn.commit()
    conn.close()
    with pytest.raises(MigrationError, match="unexpected table 'extra'"):
        migrate_file(str(path))


def test_newer_headscale_version_is_refused(tmp_path):
    path = tmp_path / "db.sqlite"
    migrate_file(str(path))
    conn = sqlite3.connect(path)
    conn.execute("UPDATE database_versions SET version = 'v0.30.0'")
    conn.commit()
    conn.close()
    with pytest.raises(MigrationError, match="downgrading"):
        migrate_file(str(path))


def test_older_headscale_version_is_bumped_and_dev_left_alone(tmp_path):
    path = tmp_path / "db.sqlite"
    migrate_file(str(path))
    for stored, expected in (("v0.28.0", HEADSCALE_VERSION), ("dev", "dev"), ("v0.29.3", "v0.29.3")):
        conn = sqlite3.connect(path)
        conn.execute("UPDATE database_versions SET version = ?", (stored,))
        conn.commit()
        conn.close()
        migrate_file(str(path))
        conn = sqlite3.connect(path)
        assert conn.execute("SELECT version FROM database_versions").fetchone() == (expected,)
        conn.close()


def test_unknown_migration_ids_are_refused(tmp_path):
    path = tmp_path / "db.sqlite"
    migrate_file(str(path))
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO migrations VALUES ('202606191500-api-key-user-id')")
    conn.commit()
    conn.close()
    with pytest.raises(MigrationError, match="newer"):
        migrate_file(str(path))


def test_pre_0_25_database_is_refused(tmp_path):
    path = tmp_path / "db.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE migrations (id text, PRIMARY KEY (id));"
        "INSERT INTO migrations VALUES ('202312101416'), ('202408181235');"
        "CREATE TABLE users (id integer PRIMARY KEY, name text);"
    )
    conn.close()
    before = file_bytes(path)
    with pytest.raises(MigrationError, match="0.25"):
        migrate_file(str(path))
    assert file_bytes(path) == before


def test_tables_without_history_are_refused(tmp_path):
    path = tmp_path / "db.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE something (x)")
    conn.close()
    with pytest.raises(MigrationError, match="not a headscale database"):
        migrate_file(str(path))


async def test_litestream_tables_on_a_fresh_file_are_left_alone(tmp_path, clock):
    path = tmp_path / "db.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE _litestream_seq (id INTEGER PRIMARY KEY, seq INTEGER);"
        "CREATE TABLE _litestream_lock (id INTEGER);"
        "INSERT INTO _litestream_seq VALUES (1, 42);"
    )
    conn.close()
    db = await Database.open(str(path), clock=clock)
    assert db.migration_report.start == "fresh"
    await db.create_user("alice")
    await db.close()
    db = await Database.open(str(path), clock=clock)
    await db.close()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT * FROM _litestream_seq").fetchall() == [(1, 42)]
    assert conn.execute("SELECT count(*) FROM _litestream_lock").fetchone() == (0,)


async def test_open_sets_the_pragmas(sqlite_db):
    async with sqlite_db._read() as conn:
        assert (await conn.execute_fetchall("PRAGMA journal_mode"))[0][0] == "wal"
        assert (await conn.execute_fetchall("PRAGMA foreign_keys"))[0][0] == 1
        assert (await conn.execute_fetchall("PRAGMA busy_timeout"))[0][0] >= 5000
        assert (await conn.execute_fetchall("PRAGMA synchronous"))[0][0] == 2  # FULL (db.py SYNCHRONOUS)


def test_routes_become_approved_routes(tmp_path):
    path = load_dump("failing-node-preauth-constraint_dump.sql", tmp_path / "db.sqlite")
    conn = sqlite3.connect(path)
    rows = [
        (1, 1, "10.0.0.0/24", 1, None), (2, 1, "0.0.0.0/0", 1, None), (3, 1, "::/0", 1, None),
        (4, 1, "10.0.0.0/24", 1, None),  # duplicate
        (5, 1, "192.168.0.0/16", 0, None),  # not enabled
        (6, 2, "172.16.0.0/12", 1, "2024-01-01 00:00:00+00:00"),  # soft-deleted
        (7, 99, "10.9.0.0/16", 1, None),  # orphan
        (8, 3, "10.1.0.0/16", 1, None),
    ]
    conn.executemany(
        "INSERT INTO routes (id, node_id, prefix, enabled, deleted_at) VALUES (?, ?, ?, ?, ?)", rows)
    conn.commit()
    conn.close()
    migrate_file(str(path))
    conn = sqlite3.connect(path)
    got = dict(conn.execute("SELECT id, approved_routes FROM nodes"))
    assert json.loads(got[1]) == ["0.0.0.0/0", "10.0.0.0/24", "::/0"]
    assert got[2] is None
    assert json.loads(got[3]) == ["10.1.0.0/16"]


def test_autoincrement_counters_survive_the_rebuild(tmp_path):
    path = load_dump("headscale_0.26.1_dump.sql", tmp_path / "db.sqlite")
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO users (id, name) VALUES (7, 'seven')")
    conn.execute("UPDATE sqlite_sequence SET seq = 40 WHERE name = 'nodes'")
    conn.commit()
    conn.close()
    migrate_file(str(path))
    conn = sqlite3.connect(path)
    seq = dict(conn.execute("SELECT name, seq FROM sqlite_sequence"))
    assert seq["nodes"] == 40 and seq["users"] == 7
    conn.execute("INSERT INTO nodes (hostname) VALUES ('next')")
    assert conn.execute("SELECT id FROM nodes WHERE hostname = 'next'").fetchone() == (41,)


def test_provider_identifiers_are_cleaned(tmp_path):
    assert clean_identifier("https://accounts.example.com//12345") == "https://accounts.example.com/12345"
    assert clean_identifier(" HTTPS://issuer.example.com/a//b/ ") == "https://issuer.example.com/a/b"
    assert clean_identifier("plain//id/") == "plain/id"
    assert clean_identifier("") == ""
    path = load_dump("headscale_0.26.0-beta.2_dump.sql", tmp_path / "db.sqlite")
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO users (name, provider_identifier) VALUES ('o', 'https://idp.example.com//sub')")
    conn.commit()
    conn.close()
    migrate_file(str(path))
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT provider_identifier FROM users").fetchall() == [("https://idp.example.com/sub",)]


def test_hujson_comments_and_trailing_commas():
    text = '{\n // c\n "a": ["x", "y",], /* b */ "s": "// not a comment, \\"q\\"",\n}'
    assert json.loads(hujson_to_json(text)) == {"a": ["x", "y"], "s": '// not a comment, "q"'}
