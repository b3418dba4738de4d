"""What differs between SQLite and PostgreSQL, in one place.

The query modules and the migrations are written once, in the SQL both engines accept:
``?`` placeholders, ``true``/``false`` literals, ``INSERT … ON CONFLICT DO NOTHING``, time
stamps as headscale's text form (PostgreSQL parses it into ``timestamptz``). For PostgreSQL
this module rewrites a statement before it runs:

| written                                   | on PostgreSQL                              |
|-------------------------------------------|--------------------------------------------|
| ``?``                                      | ``%s`` (and a literal ``%`` becomes ``%%``) |
| ``INSERT INTO <table with id> …``          | ``… RETURNING id`` (for ``lastrowid``)     |
| DDL types ``datetime`` / ``blob`` / ``numeric`` | ``timestamptz`` / ``bytea`` / ``boolean`` |
| ``integer PRIMARY KEY AUTOINCREMENT``      | ``bigserial PRIMARY KEY``                  |
| other ``integer`` columns                  | ``bigint``                                 |

The PostgreSQL DDL that comes out of schema.sql is what headscale's GORM ``AutoMigrate``
creates for the same Go structs (bigserial ids, bigint foreign keys, timestamptz, boolean,
bytea, text), with headscale's index statements unchanged.

Introspection (``has_table``, ``columns``, ``tables``) works on a stdlib ``sqlite3``
connection and on ``PgSyncConn`` (a psycopg connection used by the migrations).
"""

from __future__ import annotations

import re
import sqlite3
from functools import lru_cache
from typing import Any

SQLITE = "sqlite"
POSTGRES = "postgres"

# Tables whose INSERTs report the new id.
ID_TABLES = frozenset({"users", "nodes", "pre_auth_keys", "api_keys", "policies"})
_INSERT = re.compile(r"^\s*INSERT\s+INTO\s+\"?(\w+)\"?", re.IGNORECASE)


@lru_cache(maxsize=512)
def to_postgres(sql: str) -> tuple[str, bool]:
    """(statement for psycopg, whether it returns the new id)."""
    out = sql.replace("%", "%%").replace("?", "%s")
    returning = False
    match = _INSERT.match(sql)
    if match and match.group(1) in ID_TABLES and "RETURNING" not in sql.upper():
        out += " RETURNING id"
        returning = True
    return out, returning


_DDL_RULES = (
    (re.compile(r"\binteger PRIMARY KEY AUTOINCREMENT\b", re.IGNORECASE), "bigserial PRIMARY KEY"),
    (re.compile(r"\binteger PRIMARY KEY\b", re.IGNORECASE), "bigint PRIMARY KEY"),
    (re.compile(r"\binteger\b", re.IGNORECASE), "bigint"),
    (re.compile(r"\bdatetime\b", re.IGNORECASE), "timestamptz"),
    (re.compile(r"\bblob\b", re.IGNORECASE), "bytea"),
    (re.compile(r"\bnumeric\b", re.IGNORECASE), "boolean"),
)


def ddl_for(dialect: str, stmt: str) -> str:
    """A CREATE/ALTER statement of schema.sql or a migration, for ``dialect``."""
    if dialect != POSTGRES:
        return stmt
    for pattern, replacement in _DDL_RULES:
        stmt = pattern.sub(replacement, stmt)
    return stmt


def dialect_of(conn: Any) -> str:
    return getattr(conn, "dialect", SQLITE)


class PgSyncConn:
    """A psycopg (sync) connection that looks enough like sqlite3's for the migrations:
    ``execute(sql, params)`` returns a cursor (``fetchone``/``fetchall``/``rowcount``/iteration),
    ``executemany``. Autocommit: the migration runs its own ``BEGIN`` … ``COMMIT``."""

    dialect = POSTGRES

    def __init__(self, conn: Any) -> None:
        self.raw = conn

    def execute(self, sql: str, params: Any = ()) -> Any:
        text, _ = to_postgres(sql)
        cur = self.raw.cursor()
        cur.execute(text, tuple(params) if params else None)
        return cur

    def executemany(self, sql: str, rows: Any) -> Any:
        text, _ = to_postgres(sql)
        cur = self.raw.cursor()
        cur.executemany(text, list(rows))
        return cur

    def close(self) -> None:
        self.raw.close()


def tables(conn: Any) -> set[str]:
    if dialect_of(conn) == POSTGRES:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'").fetchall()
    else:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall()
    return {r[0] for r in rows}


def has_table(conn: Any, name: str) -> bool:
    if dialect_of(conn) == POSTGRES:
        row = conn.execute(
            "SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema()"
            " AND table_name = ?", (name,)).fetchone()
    else:
        row = conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)).fetchone()
    return row is not None


def columns(conn: Any, table: str) -> list[str]:
    if dialect_of(conn) == POSTGRES:
        rows = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema()"
            " AND table_name = ? ORDER BY ordinal_position", (table,)).fetchall()
        return [r[0] for r in rows]
    return [row[1] for row in conn.execute(f'PRAGMA table_info("{table}")')]


def integrity_errors() -> tuple[type[BaseException], ...]:
    """Constraint violations of either engine."""
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a runtime dependency
        return (sqlite3.IntegrityError,)
    return (sqlite3.IntegrityError, psycopg.errors.IntegrityError)


INTEGRITY_ERRORS = integrity_errors()
