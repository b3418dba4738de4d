"""Bring a database file to the current layout, in one transaction.

Starting points (``detect``):

| label            | what the file holds                                             |
|------------------|-----------------------------------------------------------------|
| ``fresh``        | nothing but (maybe) Litestream's tables / an empty ``migrations`` |
| ``headscale-0.N``| a headscale 0.25-0.29 database (newest headscale id recorded is from 0.N) |
| ``pyheadscale``  | a file this project wrote (one of our own ids is recorded)      |

Everything pending runs inside ``BEGIN IMMEDIATE … COMMIT`` with foreign keys off; before
committing we check foreign keys (``PRAGMA foreign_key_check``) and that the layout matches
``schema.sql`` plus our own migrations. Any failure rolls back: the file is left exactly as it
was. Refused outright: files from headscale < 0.25 (headscale itself requires a 0.25.1 hop),
files last used by a newer headscale minor than 0.29 (``database_versions``), and files that
record migration ids we do not know (written by something newer than us).
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .codec import format_time
from .dialect import POSTGRES, PgSyncConn, ddl_for, dialect_of, tables
from .errors import MigrationError, StoreError
from .migrations import OWN_PREFIX, Context, Migration, headscale_migrations, load_own
from .migrations.headscale import LEGACY_IDS, columns, has_table
from .schema import (
    FOREIGN_TABLES,
    HA_TABLES,
    IGNORED_TABLES,
    create_statement,
    layout_diff_against,
    read_layout,
    schema_statements,
)

# The headscale release whose layout we keep; stored in database_versions for headscale's
# own upgrade-path check (it allows the same minor and the next one).
HEADSCALE_VERSION = "v0.29.2"
_HEADSCALE_MINOR = (0, 29)
_FIRST_SUPPORTED = "202501221827"  # headscale 0.25.0's first migration
_SEMVER = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)")


@dataclass(frozen=True)
class MigrationReport:
    start: str                 # detect() label before migrating
    applied: tuple[str, ...]   # ids run now, in order


def detect(conn: sqlite3.Connection) -> str:
    found = {name for name in tables(conn) if not name.startswith("sqlite_") and name not in FOREIGN_TABLES | HA_TABLES}
    recorded = _recorded(conn) if "migrations" in found else []
    if not recorded and found <= {"migrations"}:
        return "fresh"
    if any(r.startswith(OWN_PREFIX) for r in recorded):
        return "pyheadscale"
    release = ""
    for mig in headscale_migrations():
        if mig.id in recorded:
            release = mig.release
    if not release:
        return "headscale-legacy" if recorded else "unknown"
    return f"headscale-{release}"


def _recorded(conn: sqlite3.Connection) -> list[str]:
    return [row[0] for row in conn.execute("SELECT id FROM migrations")]


def _parse_semver(text: str) -> tuple[int, int] | None:
    match = _SEMVER.match(text or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


def _check_version(conn: sqlite3.Connection) -> None:
    if not has_table(conn, "database_versions"):
        return
    row = conn.execute("SELECT version FROM database_versions WHERE id = 1").fetchone()
    stored = _parse_semver(row[0]) if row else None
    if stored is not None and stored > _HEADSCALE_MINOR:
        raise MigrationError(
            f"database was last used by headscale {row[0]}, newer than the 0.29 layout this server"
            " keeps; downgrading is not supported", entity="database")


def _store_version(conn: sqlite3.Connection, now: str) -> None:
    row = conn.execute("SELECT version FROM database_versions WHERE id = 1").fetchone()
    if row is None:
        conn.execute(
            "INSERT INTO database_versions (id, version, updated_at) VALUES (1, ?, ?)", (HEADSCALE_VERSION, now)
        )
        return
    stored = _parse_semver(row[0])
    if stored is not None and stored < _HEADSCALE_MINOR:
        conn.execute(
            "UPDATE database_versions SET version = ?, updated_at = ? WHERE id = 1", (HEADSCALE_VERSION, now)
        )


def _create_fresh(conn: sqlite3.Connection) -> list[str]:
    kind = dialect_of(conn)
    for stmt in schema_statements():
        words = stmt.split(None, 3)
        if len(words) > 2 and words[1].upper() == "TABLE" and words[2].split("(")[0] == "migrations":
            stmt = stmt.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS", 1)
        conn.execute(ddl_for(kind, stmt))
    # What headscale's gormigrate InitSchema records: its marker plus every migration id.
    ids = ["SCHEMA_INIT", *(m.id for m in headscale_migrations())]
    conn.executemany("INSERT INTO migrations (id) VALUES (?) ON CONFLICT DO NOTHING", [(i,) for i in ids])
    return ids


def _target_diff(conn: sqlite3.Connection, own: Sequence[Migration], ctx: Context) -> list[str]:
    """Layout of schema.sql with our migrations applied, compared with the file. On PostgreSQL
    (no headscale digest there either: GORM made the tables) the tables and their column names
    are compared."""
    mem = sqlite3.connect(":memory:", isolation_level=None)
    try:
        for stmt in schema_statements():
            mem.execute(stmt)
        for mig in own:
            mig.apply(mem, ctx)
        if dialect_of(conn) != POSTGRES:
            return layout_diff_against(conn, read_layout(mem))
        return _names_diff(conn, mem)
    finally:
        mem.close()


def _names_diff(conn: PgSyncConn, want: sqlite3.Connection) -> list[str]:
    have_tables = {t for t in tables(conn) if t not in IGNORED_TABLES}
    want_tables = {t for t in tables(want) if not t.startswith("sqlite_")}
    problems = [f"unexpected table {t!r}" for t in sorted(have_tables - want_tables)]
    problems += [f"missing table {t!r}" for t in sorted(want_tables - have_tables)]
    for table in sorted(have_tables & want_tables):
        extra = sorted(set(columns(conn, table)) - set(columns(want, table)))
        lacking = sorted(set(columns(want, table)) - set(columns(conn, table)))
        if extra or lacking:
            problems.append(f"table {table!r} columns differ: unexpected {extra}, expected {lacking}")
    return problems


def migrate(
    conn: sqlite3.Connection,
    *,
    policy: str | None = None,
    own: Sequence[Migration] | None = None,
    now: datetime | None = None,
) -> MigrationReport:
    """Migrate the database behind ``conn`` (a stdlib connection in autocommit mode,
    ``isolation_level=None``). Raises MigrationError and leaves the file unchanged on failure.
    ``own`` replaces our migration list (tests); ``policy`` is the policy document when
    headscale's policy mode was ``file``."""
    own = tuple(load_own() if own is None else own)
    ctx = Context(policy=policy, now=format_time(now or datetime.now(UTC)) or "")
    if dialect_of(conn) == POSTGRES:
        return _migrate_postgres(conn, own, ctx)
    fk_before = conn.execute("PRAGMA foreign_keys").fetchone()[0]
    conn.execute("PRAGMA foreign_keys = OFF")  # no-op inside a transaction: set it first
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            report = _migrate_in_transaction(conn, own, ctx)
            conn.execute("COMMIT")
            return report
        except BaseException as exc:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # SQLite already rolled back (e.g. disk full)
            if isinstance(exc, StoreError) or not isinstance(exc, Exception):
                raise
            raise MigrationError(f"migration failed, database left unchanged: {exc}", entity="database") from exc
    finally:
        conn.execute(f"PRAGMA foreign_keys = {'ON' if fk_before else 'OFF'}")


# Held for the migration transaction, so that servers starting together migrate one at a time.
MIGRATION_LOCK_KEY = 0x68736D6967  # "hsmig"


def _migrate_postgres(conn: PgSyncConn, own: Sequence[Migration], ctx: Context) -> MigrationReport:
    """The same steps in one PostgreSQL transaction (constraints are always enforced there)."""
    conn.execute("BEGIN")
    try:
        conn.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK_KEY,))
        report = _migrate_in_transaction(conn, own, ctx)
        conn.execute("COMMIT")
        return report
    except BaseException as exc:
        with contextlib.suppress(Exception):  # a lost connection: PostgreSQL rolled back itself
            conn.execute("ROLLBACK")
        if isinstance(exc, StoreError) or not isinstance(exc, Exception):
            raise
        raise MigrationError(f"migration failed, database left unchanged: {exc}", entity="database") from exc


def _migrate_in_transaction(conn: sqlite3.Connection, own: Sequence[Migration], ctx: Context) -> MigrationReport:
    start = detect(conn)
    if start == "unknown":
        raise MigrationError("not a headscale database: tables exist but no migration history", entity="database")
    if start == "headscale-legacy":
        raise MigrationError(
            "database is from headscale older than 0.25; upgrade it with headscale 0.25.1 first",
            entity="database")
    _check_version(conn)

    applied: list[str] = []
    if start == "fresh":
        _create_fresh(conn)
        applied.append("SCHEMA_INIT")
    recorded = set(_recorded(conn))
    known = LEGACY_IDS | {m.id for m in headscale_migrations()} | {m.id for m in own}
    unknown = sorted(recorded - known)
    if unknown:
        raise MigrationError(
            f"database records migrations this server does not know ({', '.join(unknown)});"
            " it was written by a newer headscale or pyheadscale", entity="database")
    if start != "fresh" and _FIRST_SUPPORTED not in recorded:
        raise MigrationError(
            "database is from headscale older than 0.25; upgrade it with headscale 0.25.1 first",
            entity="database")

    for mig in (*headscale_migrations(), *own):
        if mig.id in recorded:
            continue
        try:
            mig.apply(conn, ctx)
        except StoreError:
            raise
        except Exception as exc:
            raise MigrationError(f"migration {mig.id} failed, database left unchanged: {exc}",
                                 entity="database") from exc
        conn.execute("INSERT INTO migrations (id) VALUES (?)", (mig.id,))
        recorded.add(mig.id)
        applied.append(mig.id)

    if not has_table(conn, "database_versions"):  # headscale < 0.29 did not have it
        conn.execute(ddl_for(dialect_of(conn), create_statement("database_versions")))
    problems = _target_diff(conn, own, ctx)
    if problems:
        raise MigrationError("database layout does not match after migrating: " + "; ".join(problems),
                             entity="database")
    violations = [] if dialect_of(conn) == POSTGRES else conn.execute("PRAGMA foreign_key_check").fetchall()
    if violations:
        shown = ", ".join(f"{t} row {r} → {p}" for t, r, p, _ in violations[:10])
        raise MigrationError(f"foreign key violations after migrating: {shown}", entity="database")
    _store_version(conn, ctx.now)
    return MigrationReport(start=start, applied=tuple(applied))


def connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, timeout=10.0)
    conn.execute("PRAGMA busy_timeout = 10000")
    return conn


def migrate_path(path: str, *, policy: str | None = None) -> MigrationReport:
    """Run pending migrations on the file at ``path`` (created if missing); leaves the
    journal mode as it was."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = connect(path)
    try:
        return migrate(conn, policy=policy)
    finally:
        conn.close()


def migrate_file(path: str, *, policy: str | None = None) -> None:
    """Synchronous entry point for the appliance's import step (no event loop needed).
    Raises MigrationError and leaves the file unchanged on failure."""
    migrate_path(path, policy=policy)


def migrate_postgres(conninfo: str, *, policy: str | None = None) -> MigrationReport:
    """Run pending migrations on a PostgreSQL database (libpq conninfo or URL)."""
    import psycopg

    raw = psycopg.connect(conninfo, autocommit=True, connect_timeout=10, application_name="headscale-migrate")
    conn = PgSyncConn(raw)
    try:
        return migrate(conn, policy=policy)  # type: ignore[arg-type]
    finally:
        conn.close()
