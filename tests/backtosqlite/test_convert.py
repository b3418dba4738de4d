"""headscale-back-to-sqlite against a real PostgreSQL holding headscale 0.29's tables and rows."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TOOL = REPO / "headscale-back-to-sqlite" / "main.py"
READER_PW = "reader-pw"

# Tables as headscale 0.29 (GORM AutoMigrate) creates them on Postgres; host_info as jsonb to
# exercise the json path (headscale itself uses text there).
PG_SCHEMA = """
CREATE TABLE migrations (id varchar(255) PRIMARY KEY);
CREATE TABLE users (id bigserial PRIMARY KEY, name text, display_name text, email text,
  provider_identifier text, provider text, profile_pic_url text,
  created_at timestamptz, updated_at timestamptz, deleted_at timestamptz);
CREATE UNIQUE INDEX idx_name_no_provider_identifier ON users(name) WHERE provider_identifier IS NULL;
CREATE TABLE pre_auth_keys (id bigserial PRIMARY KEY, key text, prefix text, hash bytea,
  user_id bigint REFERENCES users(id) ON DELETE SET NULL, reusable boolean, ephemeral boolean DEFAULT false,
  used boolean DEFAULT false, tags text, expiration timestamptz, created_at timestamptz);
CREATE TABLE api_keys (id bigserial PRIMARY KEY, prefix text UNIQUE, hash bytea, expiration timestamptz,
  last_seen timestamptz, created_at timestamptz);
CREATE TABLE nodes (id bigserial PRIMARY KEY, machine_key text, node_key text, disco_key text, endpoints text,
  host_info jsonb, ipv4 text, ipv6 text, hostname text, given_name varchar(63),
  user_id bigint REFERENCES users(id) ON DELETE CASCADE, register_method text, tags text,
  auth_key_id bigint REFERENCES pre_auth_keys(id), last_seen timestamptz, expiry timestamptz,
  approved_routes text, created_at timestamptz, updated_at timestamptz, deleted_at timestamptz);
CREATE TABLE policies (id bigserial PRIMARY KEY, data text, created_at timestamptz, updated_at timestamptz,
  deleted_at timestamptz);
CREATE TABLE database_versions (id bigint PRIMARY KEY, version text NOT NULL, updated_at timestamptz);
"""

POLICY = '// tailnet policy\n{"acls": [{"action": "accept", "src": ["alice@"], "dst": ["*:*"]}], "x": "é"}'

PG_ROWS = """
INSERT INTO users VALUES
 (1, 'alice', 'Alice', 'alice@example.com', NULL, '', '', '2024-03-01 10:00:00.123456+00', '2024-03-01 10:00:00.123456+00', NULL),
 (2, 'bob', 'Bob', 'bob@example.com', 'https://idp.example.com/123', 'oidc', 'https://pic', '2024-03-02 00:00:00+02', '2024-03-02 00:00:00+02', NULL),
 (5, 'carol', '', '', NULL, '', '', '2024-03-03 00:00:00+00', '2024-03-04 00:00:00+00', '2024-03-05 00:00:00+00');
INSERT INTO pre_auth_keys VALUES
 (1, 'legacyplaintextkey0123456789abcdef0123456789abcd', NULL, NULL, 1, true, false, false, NULL, '2099-01-01 00:00:00+00', '2024-03-01 10:00:01+00'),
 (2, NULL, 'abcdefghijkl', '\\x2432612431302478', 2, false, true, true, '["tag:server"]', NULL, '2024-03-02 01:00:00+00'),
 (3, NULL, 'mnopqrstuvwx', '\\x00ff00ff', NULL, true, false, false, '["tag:ci","tag:server"]', '2024-01-01 00:00:00+00', '2024-03-03 00:00:00+00');
INSERT INTO api_keys VALUES (1, 'apiprefix1', '\\x00010203feff', '2099-12-31 23:59:59.999999+00', NULL, '2024-03-01 00:00:00+00');
INSERT INTO nodes VALUES
 (1, 'mkey:""" + "11" * 32 + """', 'nodekey:""" + "12" * 32 + """', 'discokey:""" + "13" * 32 + """',
  '["1.2.3.4:41641","[2001:db8::1]:41641"]', '{"OS": "linux", "Hostname": "n1", "RoutableIPs": ["10.0.0.0/24"]}',
  '100.64.0.1', 'fd7a:115c:a1e0::1', 'n1', 'n1', 1, 'authkey', '[]', 1, '2024-03-10 12:00:00.5+00', NULL,
  '["10.0.0.0/24"]', '2024-03-01 11:00:00+00', '2024-03-10 12:00:00.5+00', NULL),
 (2, 'mkey:""" + "21" * 32 + """', 'nodekey:""" + "22" * 32 + """', 'discokey:""" + "23" * 32 + """',
  '[]', 'null', '100.64.0.2', 'fd7a:115c:a1e0::2', 'tagged', 'tagged-1', NULL, 'authkey', '["tag:server"]', 3,
  NULL, '0001-01-01 00:00:00+00', '[]', '2024-03-03 00:00:01+00', '2024-03-03 00:00:01+00', NULL),
 (7, 'mkey:""" + "71" * 32 + """', 'nodekey:""" + "72" * 32 + """', '',
  'null', '{}', '100.64.0.7', NULL, 'bobs-laptop', 'bobs-laptop', 2, 'oidc', 'null', NULL,
  '2024-03-11 00:00:00+00', '2024-06-01 00:00:00+00', 'null', '2024-03-02 02:00:00+00', '2024-03-11 00:00:00+00', NULL);
INSERT INTO policies VALUES (1, $policy$""" + POLICY + """$policy$, '2024-03-01 00:00:00+00', '2024-03-01 00:00:00+00', NULL);
INSERT INTO database_versions VALUES (1, 'v0.29.2', '2024-03-01 00:00:00+00');
SELECT setval('users_id_seq', 5); SELECT setval('nodes_id_seq', 7);
"""


def headscale_migration_ids(tmp_path: Path) -> list[str]:
    """The headscale migration ids a 0.29 database records (as the server's migrations know them)."""
    from app.store.migrate import migrate_file

    fresh = tmp_path / "fresh.sqlite"
    migrate_file(str(fresh))
    conn = sqlite3.connect(fresh)
    ids = [r[0] for r in conn.execute("SELECT id FROM migrations") if not r[0].startswith("pyheadscale")]
    conn.close()
    return ids


@pytest.fixture
def headscale_pg(postgres, tmp_path):
    """A database with headscale's tables and rows, owned by one role and read by another."""
    db = f"hs_{uuid.uuid4().hex[:8]}"
    owner, reader = f"{db}_owner", f"{db}_reader"
    postgres.psql(f"CREATE ROLE {owner} LOGIN; CREATE ROLE {reader} LOGIN PASSWORD '{READER_PW}';"
                  f"CREATE DATABASE {db} OWNER {owner};")
    ids = ",".join(f"('{i}')" for i in headscale_migration_ids(tmp_path))
    postgres.psql(f"SET ROLE {owner};\n{PG_SCHEMA}\n{PG_ROWS}\nINSERT INTO migrations VALUES {ids};\n"
                  f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {reader};", db=db)
    return {"db": db, "user": reader, "port": postgres.port, "cluster": postgres}


def run_tool(pg: dict, out: Path, *extra: str, python: str = sys.executable, cwd: Path | None = None):
    return subprocess.run(
        [python, str(TOOL), "--pg-host", "127.0.0.1", "--pg-port", str(pg["port"]), "--pg-db", pg["db"],
         "--pg-user", pg["user"], "--pg-password", READER_PW, "--sqlite-out", str(out), *extra],
        check=False, capture_output=True, text=True, timeout=120, cwd=str(cwd or out.parent),
    )


def rows(db: Path, table: str) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(f"SELECT * FROM {table} ORDER BY id").fetchall()
    finally:
        conn.close()


def test_converts_every_row_with_explicit_conversions_and_the_server_opens_it(headscale_pg, tmp_path):
    out = tmp_path / "db.sqlite"
    proc = run_tool(headscale_pg, out)
    assert proc.returncode == 0, proc.stderr
    assert "the control server's migrations" in proc.stderr
    assert "users 3" in proc.stdout and "nodes 3" in proc.stdout
    assert not list(tmp_path.glob("db.sqlite?*"))  # no -wal/-journal/.partial left behind

    users = rows(out, "users")
    assert users == [
        (1, "alice", "Alice", "alice@example.com", None, "", "", "2024-03-01 10:00:00.123456+00:00",
         "2024-03-01 10:00:00.123456+00:00", None),
        (2, "bob", "Bob", "bob@example.com", "https://idp.example.com/123", "oidc", "https://pic",
         "2024-03-01 22:00:00+00:00", "2024-03-01 22:00:00+00:00", None),
        (5, "carol", "", "", None, "", "", "2024-03-03 00:00:00+00:00", "2024-03-04 00:00:00+00:00",
         "2024-03-05 00:00:00+00:00"),
    ]
    keys = rows(out, "pre_auth_keys")
    assert keys[0] == (1, "legacyplaintextkey0123456789abcdef0123456789abcd", None, None, 1, 1, 0, 0, None,
                       "2099-01-01 00:00:00+00:00", "2024-03-01 10:00:01+00:00")
    assert keys[1][2:10] == ("abcdefghijkl", b"$2a$10$x", 2, 0, 1, 1, '["tag:server"]', None)
    assert keys[2][3:5] == (b"\x00\xff\x00\xff", None)
    assert rows(out, "api_keys") == [(1, "apiprefix1", b"\x00\x01\x02\x03\xfe\xff",
                                      "2099-12-31 23:59:59.999999+00:00", None, "2024-03-01 00:00:00+00:00")]
    nodes = {n[0]: n for n in rows(out, "nodes")}
    assert nodes[1][4] == '["1.2.3.4:41641","[2001:db8::1]:41641"]'
    assert nodes[1][5] == '{"OS":"linux","Hostname":"n1","RoutableIPs":["10.0.0.0/24"]}'  # jsonb -> compact
    assert nodes[1][14:16] == ("2024-03-10 12:00:00.5+00:00", None)  # last_seen set, expiry NULL
    assert nodes[2][5] == "null" and nodes[2][10] is None and nodes[2][14] is None
    assert nodes[2][15] == "0001-01-01 00:00:00+00:00"  # Go's zero time survives
    assert nodes[7][7] is None and nodes[7][12] == "null"
    assert rows(out, "policies")[0][1] == POLICY
    conn = sqlite3.connect(out)
    assert conn.execute("SELECT seq FROM sqlite_sequence WHERE name='nodes'").fetchone() == (7,)
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    conn.close()

    # the control server's own store opens it and sees every live row
    from app.store import Database

    async def read():
        db = await Database.open(str(out))
        try:
            return (await db.list_users(), await db.list_nodes(), await db.list_pre_auth_keys(),
                    await db.list_api_keys(), await db.get_policy())
        finally:
            await db.close()

    users_, nodes_, keys_, api_keys_, policy = asyncio.run(read())
    assert [u.name for u in users_] == ["alice", "bob"]  # carol is soft-deleted
    by_id = {n.id: n for n in nodes_}
    assert sorted(by_id) == [1, 2, 7]
    assert by_id[1].endpoints == ("1.2.3.4:41641", "[2001:db8::1]:41641")
    assert by_id[1].hostinfo["RoutableIPs"] == ["10.0.0.0/24"] and by_id[1].approved_routes == ("10.0.0.0/24",)
    assert by_id[1].last_seen == datetime(2024, 3, 10, 12, 0, 0, 500000, tzinfo=UTC)
    assert by_id[2].user_id is None and by_id[2].tags == ("tag:server",) and by_id[2].last_seen is None
    assert by_id[7].ipv6 is None and by_id[7].expiry == datetime(2024, 6, 1, tzinfo=UTC)
    assert len(keys_) == 3 and len(api_keys_) == 1
    assert policy[0] == POLICY


def test_fallback_schema_matches_the_servers_migrations(tmp_path):
    """The tool's own DDL (used outside the project) creates the same layout as the server's."""
    sys.path.insert(0, str(TOOL.parent))
    try:
        import main as tool
    finally:
        sys.path.remove(str(TOOL.parent))
    from app.store.migrate import migrate_file

    ours, theirs = tmp_path / "ours.sqlite", tmp_path / "theirs.sqlite"
    conn = sqlite3.connect(ours)
    conn.executescript(tool.SCHEMA_0_29)
    conn.close()
    migrate_file(str(theirs))

    def layout(path: Path) -> dict[str, list[tuple]]:
        c = sqlite3.connect(path)
        tables = [r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table' "
                                          "AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        out = {t: c.execute(f"PRAGMA table_info({t})").fetchall() for t in tables}
        out["indexes"] = sorted(" ".join(r[0].split()) for r in
                                c.execute("SELECT sql FROM sqlite_master WHERE type='index' AND sql IS NOT NULL"))
        c.close()
        return out

    assert layout(ours) == layout(theirs)


def test_runs_standalone_without_the_project_using_its_own_schema(headscale_pg, tmp_path):
    """Outside the project (`app` not importable) the tool uses its own DDL: same rows, and the
    server's migrations accept the result as a headscale 0.29 database."""
    out = tmp_path / "standalone.sqlite"
    argv = ["main.py", "--pg-host", "127.0.0.1", "--pg-port", str(headscale_pg["port"]), "--pg-db",
            headscale_pg["db"], "--pg-user", headscale_pg["user"], "--sqlite-out", str(out)]
    hide_project = (f"import sys, runpy; sys.modules['app'] = None; sys.argv = {argv!r}; "
                    f"runpy.run_path({str(TOOL)!r}, run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", hide_project], check=False, capture_output=True, text=True, timeout=120,
                          cwd="/", env={"PGPASSWORD": READER_PW, "PATH": "/usr/bin"})
    assert proc.returncode == 0, proc.stderr
    assert "headscale 0.29's SQLite schema" in proc.stderr
    assert len(rows(out, "nodes")) == 3 and len(rows(out, "users")) == 3
    from app.store.migrate import migrate_file

    migrate_file(str(out))


def test_unknown_columns_and_tables_are_errors_and_nothing_is_written(headscale_pg, tmp_path):
    cluster, db = headscale_pg["cluster"], headscale_pg["db"]
    cluster.psql(f"ALTER TABLE nodes ADD COLUMN forced_tags text; CREATE TABLE routes (id bigserial);"
                 f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {headscale_pg['user']};", db=db)
    out = tmp_path / "db.sqlite"
    proc = run_tool(headscale_pg, out)
    assert proc.returncode == 1
    assert "error: tables not in headscale 0.29's schema: routes" in proc.stderr
    assert "error: column nodes.forced_tags (text) is not in headscale 0.29's schema" in proc.stderr
    assert not out.exists() and not list(tmp_path.glob("db.sqlite*"))


def test_bad_values_and_connection_errors_exit_non_zero(headscale_pg, tmp_path):
    cluster, db = headscale_pg["cluster"], headscale_pg["db"]
    cluster.psql("UPDATE nodes SET endpoints = 'not json' WHERE id = 7;", db=db)
    out = tmp_path / "db.sqlite"
    proc = run_tool(headscale_pg, out)
    assert proc.returncode == 1
    assert "error: nodes.endpoints (row id 7): not valid JSON" in proc.stderr
    assert not out.exists()

    wrong = {**headscale_pg, "port": headscale_pg["port"]}
    proc = subprocess.run([sys.executable, str(TOOL), "--pg-host", "127.0.0.1", "--pg-port", str(wrong["port"]),
                           "--pg-db", db, "--pg-user", headscale_pg["user"], "--pg-password", "wrong",
                           "--sqlite-out", str(out)], check=False, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "OperationalError" in proc.stderr and "wrong" not in proc.stderr
    assert not out.exists()


def test_the_postgres_session_is_read_only(headscale_pg, tmp_path):
    """The reader role only has SELECT; the converter also opens a READ ONLY transaction."""
    sys.path.insert(0, str(TOOL.parent))
    try:
        import main as tool
    finally:
        sys.path.remove(str(TOOL.parent))
    args = tool.parse_args(["--pg-host", "127.0.0.1", "--pg-port", str(headscale_pg["port"]), "--pg-db",
                            headscale_pg["db"], "--pg-user", headscale_pg["user"], "--pg-password", READER_PW])
    conn = tool.connect_postgres(args)
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW transaction_read_only")
            assert cur.fetchone() == ("on",)
            cur.execute("SHOW transaction_isolation")
            assert cur.fetchone() == ("repeatable read",)
    finally:
        conn.close()
