"""Convert a headscale PostgreSQL database into an SQLite database the appliance opens.

    uv run main.py --pg-host db.example.com --pg-user headscale --pg-password ... --sqlite-out db.sqlite
    python main.py ...            (needs psycopg; PGPASSWORD works instead of --pg-password)

Run headscale 0.29 against the Postgres database first, so that its schema is current; the
converter refuses columns and tables it does not know instead of guessing.

What it does, in order:

1. creates the SQLite schema: the control server's own migrations when this runs inside the
   project (`app.store.migrate_file` on an empty file), else headscale 0.29's SQLite schema
   restated below (a test keeps the two identical);
2. reads Postgres inside ONE read-only REPEATABLE READ transaction (a consistent snapshot; the
   session never writes), time zone UTC;
3. converts every column explicitly (table COLUMNS below): NULL stays NULL, booleans become 1/0,
   timestamps headscale's SQLite text form (`2006-01-02 15:04:05.999999+00:00`), JSON compact
   text, bytea bytes; a type it does not expect is an error, never a silent coercion;
4. writes everything in ONE SQLite transaction, compares row counts table by table, then runs
   `PRAGMA foreign_key_check` and `PRAGMA integrity_check`;
5. only then renames `<out>.partial` to `<out>`. Any error: message on stderr, exit status 1,
   no output file.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sqlite3
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

# --------------------------------------------------------------------------- target schema

# headscale 0.29's SQLite layout (hscontrol/db/schema.sql), restated.
SCHEMA_0_29 = """
CREATE TABLE migrations(id text, PRIMARY KEY(id));
CREATE TABLE users(
  id integer PRIMARY KEY AUTOINCREMENT, name text, display_name text, email text,
  provider_identifier text, provider text, profile_pic_url text,
  created_at datetime, updated_at datetime, deleted_at datetime
);
CREATE INDEX idx_users_deleted_at ON users(deleted_at);
CREATE UNIQUE INDEX idx_provider_identifier ON users(provider_identifier) WHERE provider_identifier IS NOT NULL;
CREATE UNIQUE INDEX idx_name_provider_identifier ON users(name, provider_identifier);
CREATE UNIQUE INDEX idx_name_no_provider_identifier ON users(name) WHERE provider_identifier IS NULL;
CREATE TABLE pre_auth_keys(
  id integer PRIMARY KEY AUTOINCREMENT, key text, prefix text, hash blob, user_id integer,
  reusable numeric, ephemeral numeric DEFAULT false, used numeric DEFAULT false, tags text,
  expiration datetime, created_at datetime,
  CONSTRAINT fk_pre_auth_keys_user FOREIGN KEY(user_id) REFERENCES users(id) ON DELETE SET NULL
);
CREATE UNIQUE INDEX idx_pre_auth_keys_prefix ON pre_auth_keys(prefix) WHERE prefix IS NOT NULL AND prefix != '';
CREATE TABLE api_keys(
  id integer PRIMARY KEY AUTOINCREMENT, prefix text, hash blob, expiration datetime,
  last_seen datetime, created_at datetime
);
CREATE UNIQUE INDEX idx_api_keys_prefix ON api_keys(prefix);
CREATE TABLE nodes(
  id integer PRIMARY KEY AUTOINCREMENT, machine_key text, node_key text, disco_key text,
  endpoints text, host_info text, ipv4 text, ipv6 text, hostname text, given_name varchar(63),
  user_id integer, register_method text, tags text, auth_key_id integer, last_seen datetime,
  expiry datetime, approved_routes text, created_at datetime, updated_at datetime, deleted_at datetime,
  CONSTRAINT fk_nodes_user FOREIGN KEY(user_id) REFERENCES users(id) ON DELETE CASCADE,
  CONSTRAINT fk_nodes_auth_key FOREIGN KEY(auth_key_id) REFERENCES pre_auth_keys(id)
);
CREATE TABLE policies(
  id integer PRIMARY KEY AUTOINCREMENT, data text, created_at datetime, updated_at datetime, deleted_at datetime
);
CREATE INDEX idx_policies_deleted_at ON policies(deleted_at);
CREATE TABLE database_versions(id integer PRIMARY KEY, version text NOT NULL, updated_at datetime);
"""

# --------------------------------------------------------------------------- conversions


class ConversionError(Exception):
    pass


def to_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConversionError(f"expected an integer, got {type(value).__name__}")
    return value


def to_text(value: object) -> str:
    if isinstance(value, str):
        return value
    raise ConversionError(f"expected text, got {type(value).__name__}")


def to_bool(value: object) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int) and value in (0, 1):
        return value
    raise ConversionError(f"expected a boolean, got {value!r}")


def to_time(value: object) -> str:
    """headscale's SQLite form: UTC, `YYYY-MM-DD HH:MM:SS[.ffffff]+00:00` (Go's zero time kept)."""
    if not isinstance(value, dt.datetime):
        raise ConversionError(f"expected a timestamp, got {type(value).__name__}")
    if value.tzinfo is not None and value.utcoffset() != dt.timedelta(0):
        value = value.astimezone(dt.UTC)  # the session runs in UTC, so this is rare
    text = (f"{value.year:04d}-{value.month:02d}-{value.day:02d} "
            f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}")
    if value.microsecond:
        text += "." + f"{value.microsecond:06d}".rstrip("0")
    return text + "+00:00"


def to_json(value: object) -> str:
    """JSON kept as JSON text. Text columns are copied verbatim (headscale wrote the same bytes to
    SQLite); json/jsonb columns are selected as ::text (JSON null stays the text 'null') and
    written compact, as headscale's serializer writes them."""
    if not isinstance(value, str):
        raise ConversionError(f"expected JSON text, got {type(value).__name__}")
    try:
        json.loads(value)
    except ValueError as error:
        raise ConversionError(f"not valid JSON ({error})") from None
    return value


def to_compact_json(value: object) -> str:
    return json.dumps(json.loads(to_json(value)), separators=(",", ":"), ensure_ascii=False)


def to_blob(value: object) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise ConversionError(f"expected bytes, got {type(value).__name__}")


INT, TEXT, BOOL, TIME, JSON, BLOB = "int", "text", "bool", "time", "json", "blob"
CONVERT: dict[str, Callable[[object], object]] = {
    INT: to_int, TEXT: to_text, BOOL: to_bool, TIME: to_time, JSON: to_json, BLOB: to_blob,
}
# Postgres types each kind accepts (information_schema.columns.data_type / udt_name).
PG_TYPES: dict[str, set[str]] = {
    INT: {"integer", "bigint", "smallint"},
    TEXT: {"text", "character varying", "character", "inet", "cidr"},
    BOOL: {"boolean", "smallint", "integer"},
    TIME: {"timestamp with time zone", "timestamp without time zone"},
    JSON: {"json", "jsonb", "text", "character varying"},
    BLOB: {"bytea"},
}

# Every table and column copied, in foreign-key order, with its explicit conversion.
COLUMNS: dict[str, dict[str, str]] = {
    "migrations": {"id": TEXT},
    "users": {
        "id": INT, "name": TEXT, "display_name": TEXT, "email": TEXT, "provider_identifier": TEXT,
        "provider": TEXT, "profile_pic_url": TEXT, "created_at": TIME, "updated_at": TIME, "deleted_at": TIME,
    },
    "pre_auth_keys": {
        "id": INT, "key": TEXT, "prefix": TEXT, "hash": BLOB, "user_id": INT, "reusable": BOOL,
        "ephemeral": BOOL, "used": BOOL, "tags": JSON, "expiration": TIME, "created_at": TIME,
    },
    "api_keys": {
        "id": INT, "prefix": TEXT, "hash": BLOB, "expiration": TIME, "last_seen": TIME, "created_at": TIME,
    },
    "nodes": {
        "id": INT, "machine_key": TEXT, "node_key": TEXT, "disco_key": TEXT, "endpoints": JSON,
        "host_info": JSON, "ipv4": TEXT, "ipv6": TEXT, "hostname": TEXT, "given_name": TEXT, "user_id": INT,
        "register_method": TEXT, "tags": JSON, "auth_key_id": INT, "last_seen": TIME, "expiry": TIME,
        "approved_routes": JSON, "created_at": TIME, "updated_at": TIME, "deleted_at": TIME,
    },
    "policies": {"id": INT, "data": TEXT, "created_at": TIME, "updated_at": TIME, "deleted_at": TIME},
    "database_versions": {"id": INT, "version": TEXT, "updated_at": TIME},
}
# Tables that may be absent in Postgres (older headscale never created them).
OPTIONAL_TABLES = {"database_versions", "migrations"}
# Tables whose rows replace what creating the schema wrote (the source's history wins).
REPLACED_TABLES = {"database_versions", "migrations"}


# --------------------------------------------------------------------------- steps


def create_schema(path: Path) -> str:
    """Create the empty target; returns which schema source was used."""
    try:
        from app.store.migrate import migrate_file  # the control server's migrations, when present
    except ImportError:
        migrate_file = None
    if migrate_file is not None:
        migrate_file(str(path))
        return "the control server's migrations"
    conn = sqlite3.connect(path)
    try:
        conn.executescript(SCHEMA_0_29)
    finally:
        conn.close()
    return "headscale 0.29's SQLite schema"


def pg_columns(cur, table: str) -> dict[str, str]:
    cur.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = %s ORDER BY ordinal_position",
        (table,),
    )
    return {name: data_type for name, data_type in cur.fetchall()}


def pg_tables(cur) -> set[str]:
    cur.execute("SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'")
    return {row[0] for row in cur.fetchall()}


def plan(cur) -> tuple[dict[str, list[str]], list[str]]:
    """Columns to copy per table, and every problem found (all reported at once)."""
    problems: list[str] = []
    copy: dict[str, list[str]] = {}
    tables = pg_tables(cur)
    unknown = sorted(tables - set(COLUMNS))
    if unknown:
        problems.append(f"tables not in headscale 0.29's schema: {', '.join(unknown)} "
                        "(run headscale 0.29 against this database first, so it migrates them away)")
    for table, wanted in COLUMNS.items():
        if table not in tables:
            if table not in OPTIONAL_TABLES:
                problems.append(f"table {table} is missing in Postgres")
            continue
        have = pg_columns(cur, table)
        for extra in have.keys() - wanted.keys():
            problems.append(f"column {table}.{extra} ({have[extra]}) is not in headscale 0.29's schema")
        for column, kind in wanted.items():
            if column in have and have[column] not in PG_TYPES[kind]:
                problems.append(f"column {table}.{column} is {have[column]}, expected one of "
                                f"{', '.join(sorted(PG_TYPES[kind]))}")
        copy[table] = [c for c in wanted if c in have]
        for missing in wanted.keys() - have.keys():
            print(f"note: {table}.{missing} does not exist in Postgres; it stays NULL", file=sys.stderr)
    return copy, problems


def select_sql(table: str, columns: Sequence[str], pg_types: dict[str, str]) -> str:
    parts = []
    for column in columns:
        kind = COLUMNS[table][column]
        quoted = f'"{column}"'
        if (kind == JSON and pg_types[column] in ("json", "jsonb")) or pg_types[column] in ("inet", "cidr"):
            parts.append(f"{quoted}::text")  # verbatim text: JSON null stays 'null', not SQL NULL
        else:
            parts.append(quoted)
    order = "id" if "id" in columns else columns[0]
    return f'SELECT {", ".join(parts)} FROM "{table}" ORDER BY "{order}"'


def copy_table(cur, sqlite_conn: sqlite3.Connection, table: str, columns: list[str]) -> int:
    pg_types = pg_columns(cur, table)
    cur.execute(select_sql(table, columns, pg_types))
    converters = [
        to_compact_json if COLUMNS[table][c] == JSON and pg_types[c] in ("json", "jsonb") else CONVERT[COLUMNS[table][c]]
        for c in columns
    ]
    placeholders = ", ".join("?" for _ in columns)
    verb = "INSERT OR REPLACE" if table in REPLACED_TABLES else "INSERT"
    insert = f"{verb} INTO {table} ({', '.join(columns)}) VALUES ({placeholders})"
    count = 0
    while batch := cur.fetchmany(1000):
        rows = []
        for row in batch:
            converted = []
            for column, convert, value in zip(columns, converters, row):
                if value is None:
                    converted.append(None)
                    continue
                try:
                    converted.append(convert(value))
                except ConversionError as error:
                    raise ConversionError(f"{table}.{column} (row id {row[0]}): {error}") from None
            rows.append(converted)
        sqlite_conn.executemany(insert, rows)
        count += len(rows)
    return count


def connect_postgres(args: argparse.Namespace):
    import psycopg

    conn = psycopg.connect(
        host=args.pg_host, port=args.pg_port, dbname=args.pg_db, user=args.pg_user,
        password=args.pg_password or os.environ.get("PGPASSWORD") or None,
        connect_timeout=10, application_name="headscale-back-to-sqlite",
    )
    conn.read_only = True
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    return conn


def convert(args: argparse.Namespace) -> dict[str, int]:
    out = Path(args.sqlite_out)
    if out.exists() and not args.force:
        raise ConversionError(f"{out} exists (use --force to replace it)")
    partial = out.with_name(out.name + ".partial")
    sides = [Path(f"{partial}{suffix}") for suffix in ("-journal", "-wal", "-shm")]
    for leftover in [partial, *sides]:
        leftover.unlink(missing_ok=True)
    try:
        counts = _convert_into(args, partial)
    except BaseException:
        for leftover in [partial, *sides]:
            leftover.unlink(missing_ok=True)
        raise
    os.replace(partial, out)
    return counts


def _convert_into(args: argparse.Namespace, partial: Path) -> dict[str, int]:
    source = create_schema(partial)
    print(f"created the SQLite schema with {source}", file=sys.stderr)
    counts: dict[str, int] = {}
    pg = connect_postgres(args)
    try:
        lite = sqlite3.connect(partial, isolation_level=None)
        try:
            lite.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal to forget
            lite.execute("PRAGMA foreign_keys=OFF")
            with pg.cursor() as cur:
                cur.execute("SET TIME ZONE 'UTC'")
                copy, problems = plan(cur)
                if problems:
                    raise ConversionError("\n".join(problems))
                lite.execute("BEGIN IMMEDIATE")
                lite.execute("DELETE FROM migrations")  # the source's history is the truth
                for table, columns in copy.items():
                    counts[table] = copy_table(cur, lite, table, columns)
                    cur.execute(f'SELECT count(*) FROM "{table}"')
                    (expected,) = cur.fetchone()
                    (written,) = lite.execute(f"SELECT count(*) FROM {table}").fetchone()
                    if not counts[table] == written == expected:
                        raise ConversionError(f"{table}: Postgres has {expected} rows, read {counts[table]}, "
                                              f"SQLite holds {written}")
                lite.execute("COMMIT")
            problems = [f"foreign key violation: {table} row {rowid} references missing {parent}"
                        for table, rowid, parent, _ in lite.execute("PRAGMA foreign_key_check")]
            problems += [f"integrity_check: {line}" for (line,) in lite.execute("PRAGMA integrity_check")
                         if line != "ok"]
            if problems:
                raise ConversionError("\n".join(problems))
        except BaseException:
            if lite.in_transaction:
                lite.execute("ROLLBACK")
            raise
        finally:
            lite.close()
    finally:
        pg.rollback()  # read-only session: nothing to commit
        pg.close()
    if source == "the control server's migrations":
        from app.store.migrate import migrate_file

        migrate_file(str(partial))  # validates the layout and records the server's migration ids
        lite = sqlite3.connect(partial, isolation_level=None)
        lite.execute("PRAGMA journal_mode=DELETE")
        lite.close()
    return counts


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="headscale-back-to-sqlite", description=__doc__.split("\n\n")[0])
    p.add_argument("--pg-host", default="localhost")
    p.add_argument("--pg-port", type=int, default=5432)
    p.add_argument("--pg-db", default="headscale")
    p.add_argument("--pg-user", default="headscale")
    p.add_argument("--pg-password", default=None, help="or set PGPASSWORD")
    p.add_argument("--sqlite-out", default="db.sqlite")
    p.add_argument("--force", action="store_true", help="replace an existing --sqlite-out")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        counts = convert(args)
    except ConversionError as error:
        for line in str(error).splitlines():
            print(f"error: {line}", file=sys.stderr)
        return 1
    except Exception as error:  # noqa: BLE001 - psycopg/sqlite errors: one clear line, non-zero exit
        print(f"error: {type(error).__name__}: {str(error).strip().splitlines()[0] if str(error) else ''}",
              file=sys.stderr)
        return 1
    summary = ", ".join(f"{table} {n}" for table, n in counts.items())
    print(f"wrote {args.sqlite_out}: {summary}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
