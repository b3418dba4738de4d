"""Moving between engines with a real PostgreSQL: `headscale database copy --to postgres://…`
(SQLite → PostgreSQL), and back with headscale-back-to-sqlite; every row, NULL and key survives
the round trip."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
import yaml

from app.core.model import Node
from app.store import Database
from tests.store.conftest import load_dump

REPO = Path(__file__).resolve().parents[2]
HEADSCALE = str(Path(sys.executable).parent / "headscale")
TOOL = REPO / "headscale-back-to-sqlite" / "main.py"
CONTENT = ("users", "pre_auth_keys", "api_keys", "nodes", "policies")


def config(tmp_path: Path, db: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({
        "server_url": "https://hs.example.com", "noise": {"private_key_path": str(tmp_path / "noise.key")},
        "database": {"type": "sqlite", "sqlite": {"path": str(db)}}, "policy": {"mode": "database"},
        "dns": {"base_domain": "tailnet.test"}, "unix_socket": str(tmp_path / "hs.sock")}))
    return path


def headscale(cfg: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([HEADSCALE, "-c", str(cfg), *args], capture_output=True, text=True, timeout=120,
                          check=False)


async def make_source(path: Path) -> dict[str, str]:
    """A tailnet with the awkward parts: OIDC and local users, a tagged node without owner,
    NULL columns, bcrypt and legacy keys, an API key, a policy with non-ASCII text."""
    db = await Database.open(str(path))
    try:
        alice = await db.create_user("alice", email="alice@example.com")
        bob = await db.create_user("bob", provider_identifier="https://idp.example/42", provider="oidc",
                                   display_name="Bób")
        key, full_key = await db.create_pre_auth_key(alice.id, reusable=True)
        _, tagged_key = await db.create_pre_auth_key(None, tags=["tag:server"], ephemeral=True)
        _, api_key = await db.create_api_key(datetime(2099, 1, 1, tzinfo=UTC))
        await db.insert_node(Node(id=0, machine_key="mkey:" + "11" * 32, node_key="nodekey:" + "12" * 32,
                                  disco_key="discokey:" + "13" * 32, hostname="laptop", given_name="laptop",
                                  user_id=alice.id, ipv4="100.64.0.1", ipv6="fd7a:115c:a1e0::1",
                                  endpoints=("192.0.2.1:41641",), hostinfo={"OS": "linux", "Hostname": "laptop"},
                                  auth_key_id=key.id, approved_routes=("10.0.0.0/24",),
                                  expiry=datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)))
        await db.insert_node(Node(id=0, machine_key="mkey:" + "21" * 32, node_key="nodekey:" + "22" * 32,
                                  hostname="srv", given_name="srv", user_id=None, ipv4="100.64.0.2",
                                  tags=("tag:server",), hostinfo=None))
        await db.insert_node(Node(id=0, machine_key="mkey:" + "31" * 32, node_key="nodekey:" + "32" * 32,
                                  hostname="phone", given_name="phone", user_id=bob.id, ipv4="100.64.0.3"))
        await db.delete_node(3)  # a gap in the ids: the copy keeps ids, the sequence goes past them
        await db.set_policy('{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}]} // ünïcode')
    finally:
        await db.close()
    conn = sqlite3.connect(path)  # a legacy plaintext key, as headscale < 0.28 stored them
    conn.execute("INSERT INTO pre_auth_keys (key, user_id, reusable, ephemeral, used, created_at)"
                 " VALUES ('legacy0123456789abcdef', 1, 0, 0, 1, '2024-05-06 07:08:09.123456789+00:00')")
    conn.commit()
    conn.close()
    return {"pre_auth": full_key, "tagged": tagged_key, "api": api_key}


def back_to_sqlite(postgres, name: str, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), "--pg-host", "127.0.0.1", "--pg-port", str(postgres.port),
                           "--pg-db", name, "--pg-user", "postgres", "--pg-password", postgres.admin_password,
                           "--sqlite-out", str(out)], capture_output=True, text=True, timeout=120,
                          cwd=out.parent, check=False)


def sqlite_rows(path: Path, table: str) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(f"SELECT * FROM {table} ORDER BY id").fetchall()
    finally:
        conn.close()


def null_counts_sqlite(path: Path, table: str) -> dict[str, int]:
    conn = sqlite3.connect(path)
    try:
        cols = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
        return {c: conn.execute(f'SELECT count(*) FROM {table} WHERE "{c}" IS NULL').fetchone()[0] for c in cols}
    finally:
        conn.close()


def null_counts_pg(url: str, table: str, cols) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return {c: conn.execute(f'SELECT count(*) FROM {table} WHERE "{c}" IS NULL').fetchone()[0] for c in cols}


async def test_sqlite_to_postgres_and_back_keeps_every_row_null_and_key(postgres, tmp_path):
    source = tmp_path / "db.sqlite"
    secrets = await make_source(source)
    cfg = config(tmp_path, source)
    name = postgres.create_database("copy")
    url = postgres.url(name)

    proc = headscale(cfg, "database", "copy", "--to", url)
    assert proc.returncode == 0, proc.stderr
    assert "users 2" in proc.stdout and "nodes 2" in proc.stdout and "pre_auth_keys 3" in proc.stdout
    assert postgres.admin_password not in proc.stdout + proc.stderr  # the URL is shown masked

    for table in CONTENT:
        src_nulls = null_counts_sqlite(source, table)
        assert null_counts_pg(url, table, src_nulls) == src_nulls, table

    db = await Database.open_postgres(url)
    try:
        assert (await db.validate_pre_auth_key(secrets["pre_auth"])).reusable
        assert (await db.validate_pre_auth_key(secrets["tagged"])).tags == ("tag:server",)
        assert (await db.validate_pre_auth_key("legacy0123456789abcdef")).used
        await db.validate_api_key(secrets["api"])
        nodes = await db.list_nodes()
        assert [n.id for n in nodes] == [1, 2]
        laptop, srv = nodes
        assert laptop.expiry == datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
        assert laptop.hostinfo == {"OS": "linux", "Hostname": "laptop"} and laptop.approved_routes == ("10.0.0.0/24",)
        assert srv.user_id is None and srv.hostinfo is None and srv.tags == ("tag:server",)
        assert (await db.get_policy())[0].endswith("ünïcode")
        assert (await db.create_user("carol")).id == 3  # sequences continue after the copied ids
        bob = await db.get_user_by_provider_identifier("https://idp.example/42")
        assert bob.display_name == "Bób"
        await db.delete_user(3)
    finally:
        await db.close()

    # ... and back to SQLite with the appliance's converter: the same rows as the original.
    back = tmp_path / "back.sqlite"
    proc = back_to_sqlite(postgres, name, back)
    assert proc.returncode == 0, proc.stderr
    for table in ("users", "pre_auth_keys", "api_keys", "nodes"):
        original = sqlite_rows(source, table)
        returned = sqlite_rows(back, table)
        assert len(original) == len(returned), table
        for a, b in zip(original, returned, strict=True):
            # times come back in the canonical text form (Go's 9-digit fractions become 6)
            assert [x for x in a if not isinstance(x, str) or "+00:00" not in x] == \
                   [y for y in b if not isinstance(y, str) or "+00:00" not in y], table
    assert null_counts_sqlite(back, "nodes") == null_counts_sqlite(source, "nodes")
    postgres.drop_database(name)


async def test_a_headscale_dump_copies_with_equal_counts(postgres, tmp_path):
    source = load_dump("headscale_0.26.1_dump.sql", tmp_path / "hs.sqlite")
    name = postgres.create_database("copy")
    proc = headscale(config(tmp_path, source), "database", "copy", "--to", postgres.url(name))
    assert proc.returncode == 0, proc.stderr
    with psycopg.connect(postgres.url(name)) as conn:
        for table in CONTENT:
            (n,) = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
            assert n == len(sqlite_rows(source, table)), table
    postgres.drop_database(name)


async def test_refusals_leave_the_target_as_it_was(postgres, tmp_path):
    source = tmp_path / "db.sqlite"
    await make_source(source)
    cfg = config(tmp_path, source)
    name = postgres.create_database("copy")
    url = postgres.url(name)
    assert headscale(cfg, "database", "copy", "--to", url).returncode == 0
    again = headscale(cfg, "database", "copy", "--to", url)
    assert again.returncode == 1 and "already holds data" in again.stderr and "Traceback" not in again.stderr

    # A value that is not what its column says is named, and nothing is written.
    conn = sqlite3.connect(source)
    conn.execute("UPDATE nodes SET last_seen = 'yesterday' WHERE id = 2")
    conn.commit()
    conn.close()
    fresh = postgres.create_database("copy")
    bad = headscale(cfg, "database", "copy", "--to", postgres.url(fresh))
    assert bad.returncode == 1 and "nodes.last_seen (row 2)" in bad.stderr, bad.stderr
    with psycopg.connect(postgres.url(fresh)) as pg:
        assert pg.execute("SELECT count(*) FROM users").fetchone() == (0,)
    missing = headscale(config(tmp_path, tmp_path / "nope.sqlite"), "database", "copy", "--to", url)
    assert missing.returncode == 1 and "does not exist" in missing.stderr
    for db in (name, fresh):
        postgres.drop_database(db)


@pytest.mark.parametrize("target", ["sqlite"])
async def test_postgres_to_sqlite_with_the_same_command(postgres, tmp_path, target):
    source = tmp_path / "db.sqlite"
    secrets = await make_source(source)
    name = postgres.create_database("copy")
    assert headscale(config(tmp_path, source), "database", "copy", "--to", postgres.url(name)).returncode == 0
    pg_cfg = tmp_path / "pg.yaml"
    pg_cfg.write_text(yaml.safe_dump({
        "server_url": "https://hs.example.com", "noise": {"private_key_path": str(tmp_path / "noise.key")},
        "database": {"type": "postgres", "postgres": {"host": "127.0.0.1", "port": postgres.port, "name": name,
                                                      "user": "postgres", "pass": postgres.admin_password}},
        "dns": {"base_domain": "tailnet.test"}}))
    out = tmp_path / "out.sqlite"
    proc = headscale(pg_cfg, "database", "copy", "--to", str(out))
    assert proc.returncode == 0, proc.stderr
    db = await Database.open(str(out))
    try:
        assert (await db.validate_pre_auth_key(secrets["pre_auth"])).reusable
        assert [n.hostname for n in await db.list_nodes()] == ["laptop", "srv"]
    finally:
        await db.close()
    postgres.drop_database(name)
