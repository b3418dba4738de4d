"""PostgreSQL databases made by headscale (GORM's tables) open, migrate and work here; a fresh
one gets the same layout as SQLite's, in headscale's PostgreSQL types."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest

from app.core.model import Node
from app.store import Database
from app.store.migrate import migrate_postgres

# What headscale 0.29's GORM AutoMigrate leaves on PostgreSQL (the Go structs' types).
HEADSCALE_0_29 = """
CREATE TABLE migrations (id varchar(255) PRIMARY KEY);
CREATE TABLE users (id bigserial PRIMARY KEY, created_at timestamptz, updated_at timestamptz,
  deleted_at timestamptz, name text, display_name text, email text, provider_identifier text,
  provider text, profile_pic_url text);
CREATE INDEX idx_users_deleted_at ON users(deleted_at);
CREATE UNIQUE INDEX idx_provider_identifier ON users(provider_identifier) WHERE provider_identifier IS NOT NULL;
CREATE UNIQUE INDEX idx_name_provider_identifier ON users(name, provider_identifier);
CREATE UNIQUE INDEX idx_name_no_provider_identifier ON users(name) WHERE provider_identifier IS NULL;
CREATE TABLE pre_auth_keys (id bigserial PRIMARY KEY, key text, prefix text, hash bytea,
  user_id bigint REFERENCES users(id) ON DELETE SET NULL, reusable boolean, ephemeral boolean DEFAULT false,
  used boolean DEFAULT false, tags text, created_at timestamptz, expiration timestamptz);
CREATE UNIQUE INDEX idx_pre_auth_keys_prefix ON pre_auth_keys(prefix) WHERE prefix IS NOT NULL AND prefix != '';
CREATE TABLE api_keys (id bigserial PRIMARY KEY, prefix text, hash bytea, created_at timestamptz,
  expiration timestamptz, last_seen timestamptz);
CREATE UNIQUE INDEX idx_api_keys_prefix ON api_keys(prefix);
CREATE TABLE nodes (id bigserial PRIMARY KEY, machine_key text, node_key text, disco_key text,
  endpoints text, host_info text, ipv4 text, ipv6 text, hostname text, given_name varchar(63),
  user_id bigint REFERENCES users(id) ON DELETE CASCADE, register_method text, tags text,
  auth_key_id bigint REFERENCES pre_auth_keys(id), last_seen timestamptz, expiry timestamptz,
  approved_routes text, created_at timestamptz, updated_at timestamptz, deleted_at timestamptz);
CREATE TABLE policies (id bigserial PRIMARY KEY, created_at timestamptz, updated_at timestamptz,
  deleted_at timestamptz, data text);
CREATE INDEX idx_policies_deleted_at ON policies(deleted_at);
CREATE TABLE database_versions (id bigint PRIMARY KEY, version text NOT NULL, updated_at timestamptz);
INSERT INTO users (id, name, email, created_at, updated_at) VALUES
  (1, 'alice', 'alice@example.com', '2025-01-01 00:00:00+00', '2025-01-01 00:00:00+00');
INSERT INTO pre_auth_keys (id, key, user_id, reusable, ephemeral, used, tags, created_at) VALUES
  (1, 'legacy0123456789', 1, true, false, true, NULL, '2025-01-01 00:00:00+00');
INSERT INTO nodes (id, machine_key, node_key, disco_key, endpoints, host_info, ipv4, ipv6, hostname,
  given_name, user_id, register_method, tags, auth_key_id, last_seen, expiry, approved_routes,
  created_at, updated_at) VALUES
  (3, 'mkey:""" + "11" * 32 + """', 'nodekey:""" + "12" * 32 + """', 'discokey:""" + "13" * 32 + """',
   '["192.0.2.1:41641"]', '{"OS":"linux","Hostname":"n1"}', '100.64.0.1', 'fd7a:115c:a1e0::1', 'n1', 'n1',
   1, 'authkey', '[]', 1, '2025-02-01 10:00:00.25+00', NULL, '["10.0.0.0/24"]',
   '2025-01-01 00:00:00+00', '2025-02-01 10:00:00.25+00');
INSERT INTO database_versions VALUES (1, 'v0.29.2', '2025-01-01 00:00:00+00');
SELECT setval('users_id_seq', 1); SELECT setval('pre_auth_keys_id_seq', 1); SELECT setval('nodes_id_seq', 3);
"""

# headscale 0.25 on PostgreSQL: routes in their own table, nodes.forced_tags, legacy keys only.
HEADSCALE_0_25 = """
CREATE TABLE migrations (id varchar(255) PRIMARY KEY);
CREATE TABLE users (id bigserial PRIMARY KEY, created_at timestamptz, updated_at timestamptz,
  deleted_at timestamptz, name text UNIQUE, display_name text, email text, provider_identifier text,
  provider text, profile_pic_url text);
CREATE TABLE pre_auth_keys (id bigserial PRIMARY KEY, key text, user_id bigint REFERENCES users(id),
  reusable boolean, ephemeral boolean DEFAULT false, used boolean DEFAULT false, tags text,
  created_at timestamptz, expiration timestamptz);
CREATE TABLE api_keys (id bigserial PRIMARY KEY, prefix text UNIQUE, hash bytea, created_at timestamptz,
  expiration timestamptz, last_seen timestamptz);
CREATE TABLE nodes (id bigserial PRIMARY KEY, machine_key text, node_key text, disco_key text,
  endpoints text, host_info text, ipv4 text, ipv6 text, hostname text, given_name varchar(63),
  user_id bigint REFERENCES users(id) ON DELETE CASCADE, register_method text, forced_tags text,
  auth_key_id bigint REFERENCES pre_auth_keys(id), last_seen timestamptz, expiry timestamptz,
  created_at timestamptz, updated_at timestamptz, deleted_at timestamptz);
CREATE TABLE routes (id bigserial PRIMARY KEY, created_at timestamptz, updated_at timestamptz,
  deleted_at timestamptz, node_id bigint NOT NULL REFERENCES nodes(id) ON DELETE CASCADE, prefix text,
  advertised boolean, enabled boolean, is_primary boolean);
CREATE TABLE policies (id bigserial PRIMARY KEY, created_at timestamptz, updated_at timestamptz,
  deleted_at timestamptz, data text);
INSERT INTO users (id, name, created_at) VALUES (1, 'alice', '2025-01-01 00:00:00+00');
INSERT INTO pre_auth_keys (id, key, user_id, reusable, ephemeral, used, created_at) VALUES
  (1, 'legacy0123456789', 1, false, false, true, '2025-01-01 00:00:00+00');
INSERT INTO nodes (id, machine_key, node_key, disco_key, endpoints, ipv4, hostname, given_name, user_id,
  register_method, forced_tags, auth_key_id, expiry, created_at) VALUES
  (1, 'mkey:a', 'nodekey:a', 'discokey:a', '[]', '100.64.0.1', 'r1', 'r1', 1, 'authkey', '["tag:x"]', 1,
   '0001-01-01 00:00:00+00', '2025-01-01 00:00:00+00');
INSERT INTO routes (node_id, prefix, advertised, enabled) VALUES
  (1, '10.1.0.0/16', true, true), (1, '10.0.0.0/24', true, true), (1, '192.168.0.0/24', true, false);
SELECT setval('users_id_seq', 1); SELECT setval('nodes_id_seq', 1); SELECT setval('pre_auth_keys_id_seq', 1);
"""

IDS_0_25 = ("SCHEMA_INIT", "202312101416", "202312101430", "202402151347", "2024041121742",
            "202406021630", "202409271400", "202407191627", "202408181235",
            "202501221827", "202501311657", "202502070949")


def headscale_ids() -> list[str]:
    from app.store.migrations import headscale_migrations

    return ["SCHEMA_INIT", *(m.id for m in headscale_migrations())]


@pytest.fixture
def pg_db(postgres):
    name = postgres.create_database("hs")
    yield postgres.url(name)
    postgres.drop_database(name)


def run_sql(url: str, sql: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql)


def query(url: str, sql: str) -> list[tuple]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(sql).fetchall()


async def test_fresh_database_gets_headscale_types_and_records_every_id(pg_db):
    report = migrate_postgres(pg_db)
    assert report.start == "fresh"
    types = dict(query(pg_db, "SELECT table_name || '.' || column_name, data_type FROM information_schema.columns"
                              " WHERE table_schema = 'public'"))
    assert types["users.id"] == "bigint" and types["nodes.expiry"] == "timestamp with time zone"
    assert types["pre_auth_keys.reusable"] == "boolean" and types["api_keys.hash"] == "bytea"
    assert types["nodes.given_name"] == "character varying"
    recorded = {r[0] for r in query(pg_db, "SELECT id FROM migrations")}
    assert set(headscale_ids()) <= recorded and any(r.startswith("pyheadscale-") for r in recorded)
    indexes = {r[0] for r in query(pg_db, "SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")}
    assert {"idx_provider_identifier", "idx_name_no_provider_identifier", "idx_pre_auth_keys_prefix"} <= indexes
    again = migrate_postgres(pg_db)
    assert again.start == "pyheadscale" and again.applied == ()


async def test_headscale_0_29_database_opens_and_works(pg_db):
    ids = ",".join(f"('{i}')" for i in headscale_ids())
    run_sql(pg_db, HEADSCALE_0_29 + f"INSERT INTO migrations VALUES {ids};")
    db = await Database.open_postgres(pg_db)
    try:
        assert db.migration_report.start == "headscale-0.29"
        assert db.migration_report.applied == ("pyheadscale-0001-baseline",)
        (node,) = await db.list_nodes()
        assert node.id == 3 and node.ipv4 == "100.64.0.1" and node.approved_routes == ("10.0.0.0/24",)
        assert node.last_seen == datetime(2025, 2, 1, 10, 0, 0, 250000, tzinfo=UTC)
        assert node.hostinfo["OS"] == "linux" and node.endpoints == ("192.0.2.1:41641",)
        key = await db.validate_pre_auth_key("legacy0123456789")
        assert key.used and key.reusable and not key.ephemeral
        user = await db.create_user("bob")
        assert user.id == 2  # the sequence continues
        new = await db.insert_node(Node(id=0, machine_key="mkey:" + "21" * 32, node_key="nodekey:" + "22" * 32,
                                        hostname="n2", given_name="n2", user_id=user.id, ipv4="100.64.0.2"))
        assert new.id == 4
        _, full = await db.create_pre_auth_key(user.id, reusable=True)
        assert (await db.validate_pre_auth_key(full)).reusable
    finally:
        await db.close()
    assert query(pg_db, "SELECT version FROM database_versions") == [("v0.29.2",)]


async def test_headscale_0_25_database_migrates_like_headscale(pg_db):
    ids = ",".join(f"('{i}')" for i in IDS_0_25)
    run_sql(pg_db, HEADSCALE_0_25 + f"INSERT INTO migrations VALUES {ids};")
    db = await Database.open_postgres(pg_db)
    try:
        assert db.migration_report.start == "headscale-0.25"
        (node,) = await db.list_nodes()
        assert node.approved_routes == ("10.1.0.0/16", "10.0.0.0/24")  # enabled ones, as SQLite sorts them
        assert node.tags == ("tag:x",) and node.user_id is None  # tagged nodes lose their user
        assert node.expiry is None  # Go's zero time became NULL
    finally:
        await db.close()
    tables = {r[0] for r in query(pg_db, "SELECT table_name FROM information_schema.tables WHERE table_schema='public'")}
    assert "routes" not in tables and "database_versions" in tables
    cols = dict(query(pg_db, "SELECT column_name, data_type FROM information_schema.columns"
                             " WHERE table_name = 'pre_auth_keys'"))
    assert cols["hash"] == "bytea" and cols["prefix"] == "text"
    recorded = {r[0] for r in query(pg_db, "SELECT id FROM migrations")}
    assert set(headscale_ids()) <= recorded


async def test_failed_migration_leaves_the_database_unchanged(pg_db):
    run_sql(pg_db, HEADSCALE_0_25 + "INSERT INTO migrations VALUES ('SCHEMA_INIT'), ('202501221827'),"
                   " ('209912312359-from-the-future');")
    from app.store import MigrationError

    with pytest.raises(MigrationError, match="does not know"):
        migrate_postgres(pg_db)
    tables = {r[0] for r in query(pg_db, "SELECT table_name FROM information_schema.tables WHERE table_schema='public'")}
    assert "routes" in tables and "database_versions" not in tables


async def test_database_debug_logs_statements_without_values(postgres, caplog):
    name = postgres.create_database("dbg", template=postgres.migrated_template())
    db = await Database.open_postgres(postgres.url(name), sql_debug=True, max_open=2, max_idle=1)
    try:
        caplog.set_level("DEBUG", logger="headscale.sql")
        user = await db.create_user("alice")
        _, full = await db.create_pre_auth_key(user.id)
        await db.validate_pre_auth_key(full)
    finally:
        await db.close()
        postgres.drop_database(name)
    lines = [r.getMessage() for r in caplog.records if r.name == "headscale.sql"]
    assert any("INSERT INTO users" in line for line in lines)
    secret_parts = full.removeprefix("hskey-auth-")
    assert not any("alice" in line or secret_parts[:12] in line for line in lines)
