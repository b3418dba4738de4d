"""Copy a whole database between engines: SQLite → PostgreSQL (``headscale database copy --to
postgres://…``) and PostgreSQL → SQLite (``--to /path/db.sqlite``).

Steps, all or nothing:

1. migrate the source (what the server does when it opens it), so both sides have one layout;
2. create the target with the same migrations; it must hold no users, nodes, keys or
   policies (a target that already has a tailnet is refused, never merged);
3. read the source in one transaction (a consistent snapshot) and write every table in
   foreign-key order in ONE target transaction, converting each column explicitly by its
   type in schema.sql (integer, text, datetime, boolean, blob): NULL stays NULL; a value that
   does not convert (a time stamp that is not one) is an error naming table, column and row;
4. on PostgreSQL move every id sequence past the largest id copied;
5. before committing, read the target back and compare with the source table by table: row
   counts, NULLs per column, and every value (keys, hashes, addresses, JSON text) after the
   same normalisation. Any difference rolls the target back.

The migration history (``migrations``) and ``database_versions`` are copied as the source has
them. The HA lease tables are never copied (a new deployment starts at epoch 1).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import Any

from .codec import format_time, parse_time
from .dialect import POSTGRES, PgSyncConn, dialect_of, has_table
from .errors import StoreError
from .migrate import connect as sqlite_connect
from .migrate import migrate, migrate_path
from .schema import schema_statements

# Foreign-key order; migrations and database_versions replace what creating the target wrote.
TABLES = ("users", "pre_auth_keys", "api_keys", "nodes", "policies", "migrations", "database_versions")
CONTENT_TABLES = ("users", "pre_auth_keys", "api_keys", "nodes", "policies")
SEQUENCED = ("users", "pre_auth_keys", "api_keys", "nodes", "policies")


class CopyError(StoreError):
    kind = "copy"


@lru_cache(maxsize=1)
def column_kinds() -> dict[str, dict[str, str]]:
    """table → column → kind (int, text, time, bool, blob), from schema.sql's declared types."""
    mem = sqlite3.connect(":memory:")
    try:
        for stmt in schema_statements():
            mem.execute(stmt)
        out: dict[str, dict[str, str]] = {}
        for table in TABLES:
            cols = {}
            for _, name, decl, *_ in mem.execute(f'PRAGMA table_info("{table}")'):
                decl = (decl or "").lower()
                cols[name] = ("int" if decl.startswith("integer") else "time" if decl == "datetime"
                              else "bool" if decl == "numeric" else "blob" if decl == "blob" else "text")
            out[table] = cols
        return out
    finally:
        mem.close()


def _canonical(kind: str, value: Any) -> Any:
    """One engine-independent value; raises ValueError when it does not convert."""
    if value is None:
        return None
    if kind == "time":
        parsed = parse_time(value)
        if parsed is None:
            raise ValueError(f"not a time stamp: {value!r}")
        return parsed
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        text = (value.decode() if isinstance(value, bytes) else str(value)).strip().lower()
        if text in ("1", "true", "t"):
            return True
        if text in ("0", "false", "f"):
            return False
        raise ValueError(f"not a boolean: {value!r}")
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"not an integer: {value!r}")
        return value
    if kind == "blob":
        if isinstance(value, str):
            return value.encode()
        return bytes(value)
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return str(value) if not isinstance(value, str) else value


def _for_target(dialect: str, kind: str, value: Any) -> Any:
    if value is None:
        return None
    if dialect == POSTGRES:
        return value  # datetime, bool, bytes, int, str all adapt
    if kind == "time":
        return format_time(value)
    if kind == "bool":
        return int(value)
    return value


def _open(target: str) -> Any:
    if target.startswith(("postgres://", "postgresql://")) or "=" in target:
        import psycopg

        raw = psycopg.connect(target, autocommit=True, connect_timeout=10, application_name="headscale-copy")
        return PgSyncConn(raw)
    return sqlite_connect(target)


def _prepare(target: str) -> None:
    if target.startswith(("postgres://", "postgresql://")) or "=" in target:
        conn = _open(target)
        try:
            migrate(conn)  # type: ignore[arg-type]
        finally:
            conn.close()
    else:
        migrate_path(target)


def _rows(conn: Any, table: str, cols: list[str]) -> Iterator[tuple]:
    order = "id" if "id" in cols else cols[0]
    quoted = ", ".join(f'"{c}"' for c in cols)
    yield from conn.execute(f'SELECT {quoted} FROM "{table}" ORDER BY "{order}"').fetchall()


def _canonical_rows(conn: Any, table: str, cols: list[str]) -> list[tuple]:
    kinds = column_kinds()[table]
    out = []
    for row in _rows(conn, table, cols):
        values = []
        for col, value in zip(cols, row, strict=True):
            try:
                values.append(_canonical(kinds[col], value))
            except ValueError as exc:
                raise CopyError(f"{table}.{col} (row {row[0]}): {exc}; fix the value in the source first",
                                entity="database") from None
        out.append(tuple(values))
    return out


def _begin(conn: Any) -> None:
    conn.execute("BEGIN" if dialect_of(conn) == POSTGRES else "BEGIN IMMEDIATE")


def _check_empty(conn: Any, where: str) -> None:
    busy = [t for t in CONTENT_TABLES if conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]]
    if busy:
        raise CopyError(f"{where} already holds data ({', '.join(busy)}); copy into an empty database",
                        entity="database")


def copy_database(source: str, target: str, *, policy: str | None = None,
                  progress: Callable[[str], None] | None = None) -> dict[str, int]:
    """Copy ``source`` into ``target`` (each an SQLite path or a PostgreSQL URL / conninfo).
    Returns rows per table. Raises CopyError (target unchanged beyond its empty schema)."""
    say = progress or (lambda _msg: None)
    if source == target:
        raise CopyError("source and target are the same database", entity="database")
    _prepare(source)
    _prepare(target)
    say("both databases are at the current layout")
    src, dst = _open(source), _open(target)
    kind_of = dialect_of(dst)
    counts: dict[str, int] = {}
    try:
        if dialect_of(src) == POSTGRES:
            src.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        else:
            src.execute("BEGIN")
        _begin(dst)
        try:
            _check_empty(dst, "the target")
            if kind_of != POSTGRES:
                dst.execute("PRAGMA defer_foreign_keys = ON")
            dst.execute("DELETE FROM migrations")
            dst.execute("DELETE FROM database_versions")
            snapshot: dict[str, tuple[list[str], list[tuple]]] = {}
            for table in TABLES:
                if not has_table(src, table):
                    continue
                cols = list(column_kinds()[table])
                rows = _canonical_rows(src, table, cols)
                snapshot[table] = (cols, rows)
                kinds = column_kinds()[table]
                marks = ", ".join("?" for _ in cols)
                names = ", ".join(f'"{c}"' for c in cols)
                dst.executemany(f'INSERT INTO "{table}" ({names}) VALUES ({marks})',
                                [tuple(_for_target(kind_of, kinds[c], v) for c, v in zip(cols, r, strict=True))
                                 for r in rows])
                counts[table] = len(rows)
                say(f"{table}: {len(rows)} rows")
            if kind_of == POSTGRES:
                for table in SEQUENCED:
                    dst.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                                f" GREATEST((SELECT max(id) FROM \"{table}\"), 1),"
                                f" (SELECT max(id) FROM \"{table}\") IS NOT NULL)")
            _verify(snapshot, dst)
            if kind_of != POSTGRES:
                problems = dst.execute("PRAGMA foreign_key_check").fetchall()
                if problems:
                    raise CopyError(f"foreign key violations in the copy: {problems[:5]}", entity="database")
            dst.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(Exception):
                dst.execute("ROLLBACK")
            raise
        finally:
            with contextlib.suppress(Exception):
                src.execute("ROLLBACK")
    finally:
        src.close()
        dst.close()
    return counts


def _verify(snapshot: dict[str, tuple[list[str], list[tuple]]], dst: Any) -> None:
    """The copy, read back inside the writing transaction, equals the source."""
    problems: list[str] = []
    for table, (cols, want) in snapshot.items():
        have = _canonical_rows(dst, table, cols)
        if len(have) != len(want):
            problems.append(f"{table}: source has {len(want)} rows, the copy {len(have)}")
            continue
        for i, col in enumerate(cols):
            nulls_want = sum(1 for r in want if r[i] is None)
            nulls_have = sum(1 for r in have if r[i] is None)
            if nulls_want != nulls_have:
                problems.append(f"{table}.{col}: {nulls_want} NULLs in the source, {nulls_have} in the copy")
        for a, b in zip(want, have, strict=True):
            if a != b:
                diff = [c for c, x, y in zip(cols, a, b, strict=True) if x != y]
                problems.append(f"{table} row {a[0]}: {', '.join(diff)} differ in the copy")
    if problems:
        raise CopyError("the copy does not match the source: " + "; ".join(problems[:10]), entity="database")

