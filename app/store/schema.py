"""The target layout (migrations/schema.sql) and a check that a database file matches it.

The check compares what headscale 0.29's start-up validation compares, so a file that passes
here also passes there: the set of tables and indexes; per table its columns (name, declared
type upper-cased, NOT NULL, default, primary key, hidden); per index its SQL text with each
line trimmed and lines joined by one space. SQLite's own objects (``sqlite_sequence``,
``sqlite_autoindex_*``) and Litestream's bookkeeping tables are ignored.
"""

from __future__ import annotations

import sqlite3
from functools import lru_cache
from importlib import resources

# Tables that are not ours and must never be touched or reported (Litestream 0.3.x).
FOREIGN_TABLES = frozenset({"_litestream_seq", "_litestream_lock"})
# The HA lease (ha.py, PostgreSQL only): created on demand, outside headscale's layout.
HA_TABLES = frozenset({"pyheadscale_ha_lease", "pyheadscale_ha_epochs"})
IGNORED_TABLES = FOREIGN_TABLES | HA_TABLES | {"sqlite_sequence", "_schema_history"}

SCHEMA_TABLES = ("migrations", "users", "pre_auth_keys", "api_keys", "nodes", "policies", "database_versions")


def split_sql(text: str) -> list[str]:
    """Split a script into complete statements (no executescript: it would COMMIT)."""
    statements: list[str] = []
    buf = ""
    for line in text.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            stmt = _strip_comments(buf).strip()
            if stmt and stmt != ";":
                statements.append(stmt)
            buf = ""
    rest = _strip_comments(buf).strip()
    if rest:
        raise ValueError(f"incomplete SQL statement at end of script: {rest[:60]!r}")
    return statements


def _strip_comments(stmt: str) -> str:
    """Drop whole-line ``--`` comments (statements here never put ``--`` inside strings)."""
    return "\n".join(line for line in stmt.splitlines() if not line.lstrip().startswith("--"))


@lru_cache(maxsize=1)
def schema_sql() -> str:
    return resources.files(__package__).joinpath("migrations/schema.sql").read_text()


@lru_cache(maxsize=1)
def schema_statements() -> tuple[str, ...]:
    return tuple(split_sql(schema_sql()))


def create_statement(name: str) -> str:
    """The CREATE statement of one table or index in the target layout."""
    for stmt in schema_statements():
        words = stmt.replace("(", " ( ").split()
        upper = [w.upper() for w in words]
        if upper[:2] == ["CREATE", "TABLE"] and words[2] == name:
            return stmt
        if upper[:2] == ["CREATE", "INDEX"] and words[2] == name:
            return stmt
        if upper[:3] == ["CREATE", "UNIQUE", "INDEX"] and words[3] == name:
            return stmt
    raise KeyError(name)


def index_statements(table: str) -> list[str]:
    out = []
    for stmt in schema_statements():
        upper = stmt.upper()
        if upper.startswith(("CREATE INDEX", "CREATE UNIQUE INDEX")) and f" ON {table}(" in stmt:
            out.append(stmt)
    return out


def _clean_sql(sql: str | None) -> str:
    return " ".join(line.strip() for line in (sql or "").splitlines() if line.strip())


Layout = dict[tuple[str, str], object]


def read_layout(conn: sqlite3.Connection) -> Layout:
    layout: Layout = {}
    rows = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall()
    for kind, name, table, sql in rows:
        if table in IGNORED_TABLES or name.startswith("sqlite_autoindex_"):
            continue
        if kind == "table":
            cols = conn.execute(f'PRAGMA table_xinfo("{name}")').fetchall()
            layout[(kind, name)] = frozenset(
                (c[1], (c[2] or "").upper(), bool(c[3]), c[4], bool(c[5]), c[6]) for c in cols
            )
        else:
            layout[(kind, name)] = _clean_sql(sql)
    return layout


@lru_cache(maxsize=1)
def target_layout() -> Layout:
    mem = sqlite3.connect(":memory:")
    try:
        for stmt in schema_statements():
            mem.execute(stmt)
        return read_layout(mem)
    finally:
        mem.close()


def layout_diff(conn: sqlite3.Connection) -> list[str]:
    """Differences between the file and schema.sql; empty when they match."""
    return layout_diff_against(conn, target_layout())


def layout_diff_against(conn: sqlite3.Connection, want: Layout) -> list[str]:
    have = read_layout(conn)
    problems = []
    for key in sorted(have.keys() - want.keys()):
        problems.append(f"unexpected {key[0]} {key[1]!r}")
    for key in sorted(want.keys() - have.keys()):
        problems.append(f"missing {key[0]} {key[1]!r}")
    for key in sorted(have.keys() & want.keys()):
        if have[key] != want[key]:
            if key[0] == "table":
                extra = sorted(c[0] for c in have[key] - want[key])  # type: ignore[operator]
                lacking = sorted(c[0] for c in want[key] - have[key])  # type: ignore[operator]
                problems.append(f"table {key[1]!r} columns differ: unexpected {extra}, expected {lacking}")
            else:
                problems.append(f"{key[0]} {key[1]!r} is {have[key]!r}, expected {want[key]!r}")
    return problems
