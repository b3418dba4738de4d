"""Every headscale dump opens, migrates to the 0.29 layout and shows its users and nodes.

Expectations per dump mirror headscale's own hscontrol/db/db_test.go
(TestSQLiteMigrationAndDataValidation, TestSQLiteAllTestdataMigrations: all dumps migrate).
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

import pytest

from app.core.model import Node
from app.store import Database
from app.store.migrate import HEADSCALE_VERSION
from app.store.migrations import headscale_migrations
from app.store.schema import layout_diff

from .conftest import T0, dump_paths, load_dump

ALL_IDS = {m.id for m in headscale_migrations()}


async def open_dump(tmp_path, name: str, **kw) -> Database:
    path = load_dump(name, tmp_path / "db.sqlite")
    return await Database.open(str(path), **kw)


def by_host(nodes: list[Node]) -> dict[str, Node]:
    return {n.hostname: n for n in nodes}


@pytest.mark.parametrize("dump", dump_paths(), ids=lambda p: p.name)
async def test_every_dump_migrates_to_the_0_29_layout(tmp_path, dump):
    path = load_dump(dump, tmp_path / "db.sqlite")
    db = await Database.open(str(path))
    try:
        await db.list_users()
        await db.list_nodes()
        await db.list_pre_auth_keys()
        await db.list_api_keys()
    finally:
        await db.close()
    conn = sqlite3.connect(path)
    try:
        assert layout_diff(conn) == []
        recorded = {r[0] for r in conn.execute("SELECT id FROM migrations")}
        assert ALL_IDS <= recorded, "headscale 0.29 must find nothing left to run"
        assert conn.execute("SELECT version FROM database_versions WHERE id = 1").fetchone() == (HEADSCALE_VERSION,)
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        for old in ("routes", "namespaces", "machines", "shared_machines", "kvs", "pre_auth_key_acl_tags"):
            assert conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (old,)).fetchone() is None
    finally:
        conn.close()


@pytest.mark.parametrize("dump", dump_paths(), ids=lambda p: p.name)
async def test_every_dump_opens_a_second_time_without_changes(tmp_path, dump):
    path = load_dump(dump, tmp_path / "db.sqlite")
    db = await Database.open(str(path))
    await db.close()
    before = list(sqlite3.connect(path).iterdump())
    db = await Database.open(str(path))
    assert db.migration_report.applied == ()
    assert db.migration_report.start == "pyheadscale"
    await db.close()
    assert list(sqlite3.connect(path).iterdump()) == before


async def test_failing_node_preauth_constraint(tmp_path):
    # 1 user, 2 API keys, 6 nodes whose auth_key_id (0) points at no key: cleared.
    db = await open_dump(tmp_path, "failing-node-preauth-constraint_dump.sql")
    try:
        assert db.migration_report.start == "headscale-0.25"
        users = await db.list_users()
        assert [(u.id, u.name, u.display_name, u.email) for u in users] == [
            (1, "username_1", "display_name_1", "email_1@example.com")
        ]
        assert users[0].created_at == datetime(2023, 3, 30, 23, 8, 54, 151102, tzinfo=UTC)
        assert len(await db.list_api_keys()) == 2
        nodes = await db.list_nodes()
        assert len(nodes) == 6
        for node in nodes:
            assert node.machine_key.startswith("mkey:") and len(node.machine_key) == 5 + 64
            assert node.node_key.startswith("nodekey:")
            assert node.disco_key.startswith("discokey:")
            assert node.auth_key_id is None
            assert node.expiry is None  # zero time cleared
            assert node.is_tagged and node.user_id is None  # forced tags became tags
        n1 = nodes[0]
        assert (n1.hostname, n1.given_name, n1.ipv4, n1.ipv6) == (
            "hostname_1", "given_name1", "100.64.0.1", "fd7a:115c:a1e0::1")
        assert n1.tags == ("tag:sshclient", "tag:ssh")
        assert n1.register_method == "cli"
        assert n1.last_seen == datetime(2025, 2, 5, 16, 46, 13, 960213, tzinfo=UTC)
        assert n1.hostinfo == {} and n1.endpoints == ()
    finally:
        await db.close()


async def test_request_tags_move_into_tags(tmp_path):
    db = await open_dump(tmp_path, "request_tags_migration_test.sql")
    try:
        nodes = by_host(await db.list_nodes())
        assert len(nodes) == 7
        assert nodes["node1"].tags == ("tag:server",)
        assert nodes["node2"].tags == ()  # unauthorized tag rejected
        assert set(nodes["node3"].tags) == {"tag:client", "tag:existing"}
        assert nodes["node4"].tags == ("tag:server",)  # no duplicate
        assert nodes["node5"].tags == ()
        assert nodes["node6"].tags == ("tag:admin",)  # via group:admins
        assert nodes["node7"].tags == ("tag:server",)  # tag:forbidden rejected
        # tagged nodes lose their user (0.29), untagged keep it
        assert nodes["node1"].user_id is None and nodes["node2"].user_id == 1 and nodes["node5"].user_id == 2
    finally:
        await db.close()


async def test_request_tags_use_a_file_policy_when_given(tmp_path):
    policy = '{"tagOwners": {"tag:unauthorized": ["user1@example.com"],}, // file mode\n}'
    db = await open_dump(tmp_path, "request_tags_migration_test.sql", policy=policy)
    try:
        nodes = by_host(await db.list_nodes())
        assert nodes["node2"].tags == ("tag:unauthorized",)
        assert nodes["node1"].tags == ()  # tag:server is not in the file policy
    finally:
        await db.close()


async def test_zero_time_expiry_is_cleared(tmp_path):
    db = await open_dump(tmp_path, "zero_time_expiry_migration_test.sql")
    try:
        nodes = by_host(await db.list_nodes())
        assert len(nodes) == 5
        assert nodes["node1"].expiry is None and not nodes["node1"].is_expired(T0)
        assert nodes["node2"].expiry is None
        assert nodes["node3"].expiry == datetime(2099, 1, 1, tzinfo=UTC)
        assert not nodes["node3"].is_expired(T0)
        assert nodes["node4"].expiry == datetime(2020, 1, 1, tzinfo=UTC)
        assert nodes["node4"].is_expired(T0)
        assert nodes["node5"].expiry is None
    finally:
        await db.close()


async def test_null_tags_keep_their_user(tmp_path):
    db = await open_dump(tmp_path, "null_tags_user_id_migration_test.sql")
    try:
        nodes = by_host(await db.list_nodes())
        assert len(nodes) == 4
        assert not nodes["node1"].is_tagged and nodes["node1"].user_id == 2
        assert nodes["node2"].is_tagged and nodes["node2"].user_id is None
        assert not nodes["node3"].is_tagged and nodes["node3"].user_id == 1
        assert not nodes["node4"].is_tagged and nodes["node4"].user_id == 1
    finally:
        await db.close()


async def test_null_tags_user_is_recovered_from_the_pre_auth_key(tmp_path):
    db = await open_dump(tmp_path, "recover_null_tags_user_id_migration_test.sql")
    try:
        assert db.migration_report.applied == (
            "202606181200-recover-null-tags-node-user-id", "pyheadscale-0001-baseline")
        nodes = by_host(await db.list_nodes())
        assert nodes["node1"].user_id == 2
        assert nodes["node2"].is_tagged and nodes["node2"].user_id is None
        assert nodes["node3"].user_id is None  # CLI-registered: nothing to recover from
        assert nodes["node4"].user_id == 1
        keys = await db.list_pre_auth_keys()
        assert [(k.id, k.prefix, k.user_id, k.reusable, k.used) for k in keys] == [
            (1, "pak1", 2, True, True), (2, "pak2", 1, True, True)]
    finally:
        await db.close()


async def test_litestream_tables_survive_migration(tmp_path):
    db = await open_dump(tmp_path, "headscale_0.26.1_dump-litestream.sql")
    await db.close()
    conn = sqlite3.connect(tmp_path / "db.sqlite")
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"_litestream_seq", "_litestream_lock"} <= names


@pytest.mark.parametrize("name", [
    "headscale_0.26.0-beta.1_dump.sql",  # last_seen column was dropped by a beta
    "headscale_0.26.0-beta.2_dump.sql",
])
async def test_beta_dumps_get_last_seen_back(tmp_path, name):
    db = await open_dump(tmp_path, name)
    await db.close()
    conn = sqlite3.connect(tmp_path / "db.sqlite")
    cols = [r[1] for r in conn.execute("PRAGMA table_info(nodes)")]
    assert "last_seen" in cols and "tags" in cols and "forced_tags" not in cols
