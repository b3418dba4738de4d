"""headscale's SQLite migrations 0.25 → 0.29, restated in our own SQL.

Each step carries the gormigrate id headscale records for it (hscontrol/db/db.go), and does
to the file what that headscale migration does. They run in one transaction with foreign keys
off; the caller checks foreign keys and the final layout before committing (as headscale
does after its own run).

Where headscale used GORM's AutoMigrate to reshape tables (202501221827, 202501311657) we do
nothing: the 0.27 rebuild (202507021200) recreates every table from the layout in
schema.sql and copies the columns both sides have, which gives the same end state. That
rebuild creates the 0.29 layout directly (with ``pre_auth_keys.prefix/hash`` and
``nodes.tags``); the later steps that add those (202511011637, 202511131445) then find
nothing to do, exactly as on a file headscale 0.27 had already rebuilt.
"""

from __future__ import annotations

import ipaddress
import json
import sqlite3
from urllib.parse import urlsplit, urlunsplit

from .. import dialect
from ..codec import decode_list, decode_object, encode_list
from ..schema import create_statement, index_statements
from . import Context, Migration
from .request_tags import PolicyUnreadable, TagOwners, UserRow

# Ids headscale 0.23-0.24 recorded; known, never run again (0.29 starts at 0.25).
LEGACY_IDS = frozenset({
    "SCHEMA_INIT",
    "202312101416", "202312101430", "202402151347", "2024041121742",
    "202406021630", "202409271400", "202407191627", "202408181235",
})

REBUILT_TABLES = ("users", "pre_auth_keys", "api_keys", "nodes", "policies")


def has_table(conn: sqlite3.Connection, name: str) -> bool:
    return dialect.has_table(conn, name)


def columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return dialect.columns(conn, table)


# --- 0.25 -------------------------------------------------------------------------------

def drop_orphan_routes(conn: sqlite3.Connection, ctx: Context) -> None:
    """202501221827: routes must belong to an existing node."""
    if not has_table(conn, "routes"):
        return
    if has_table(conn, "nodes"):
        conn.execute("DELETE FROM routes WHERE node_id NOT IN (SELECT id FROM nodes)")
    conn.execute("DELETE FROM routes WHERE node_id IS NULL")


def noop(conn: sqlite3.Connection, ctx: Context) -> None:
    """A headscale step with no effect on the end state (see module docstring)."""


def clear_dangling_auth_keys(conn: sqlite3.Connection, ctx: Context) -> None:
    """202502070949: nodes may not point at a deleted pre-auth key."""
    if not (has_table(conn, "pre_auth_keys") and has_table(conn, "nodes")):
        return
    conn.execute(
        "UPDATE nodes SET auth_key_id = NULL WHERE auth_key_id IS NOT NULL"
        " AND auth_key_id NOT IN (SELECT id FROM pre_auth_keys)"
    )


# --- 0.26 -------------------------------------------------------------------------------

def _prefix_order(text: str) -> tuple[int, int, int] | None:
    try:
        iface = ipaddress.ip_interface(text)
    except ValueError:
        return None
    return (iface.version, iface.network.prefixlen, int(iface.ip))


def routes_to_approved_routes(conn: sqlite3.Connection, ctx: Context) -> None:
    """202502131714: enabled routes become ``nodes.approved_routes`` (sorted, unique); the
    routes table goes."""
    if not has_table(conn, "nodes"):
        return
    if "approved_routes" not in columns(conn, "nodes"):
        conn.execute("ALTER TABLE nodes ADD COLUMN approved_routes text")
    if not has_table(conn, "routes"):
        return
    route_cols = columns(conn, "routes")
    where = " WHERE deleted_at IS NULL" if "deleted_at" in route_cols else ""
    per_node: dict[int, list[tuple[tuple[int, int, int], str]]] = {}
    for node_id, prefix, enabled in conn.execute(f"SELECT node_id, prefix, enabled FROM routes{where} ORDER BY id"):
        if node_id is None or not enabled or str(enabled).lower() == "false":
            continue
        if isinstance(prefix, bytes):
            prefix = prefix.decode()
        order = _prefix_order(str(prefix))
        if order is None:
            continue
        iface = ipaddress.ip_interface(str(prefix))
        per_node.setdefault(int(node_id), []).append((order, f"{iface.ip}/{iface.network.prefixlen}"))
    for node_id, routes in per_node.items():
        unique: list[str] = []
        for _, text in sorted(routes):
            if not unique or unique[-1] != text:
                unique.append(text)
        conn.execute("UPDATE nodes SET approved_routes = ? WHERE id = ?", (encode_list(unique), node_id))
    conn.execute("DROP TABLE routes")


def add_last_seen(conn: sqlite3.Connection, ctx: Context) -> None:
    """202505091439: some 0.26 betas dropped ``nodes.last_seen``; put it back."""
    if has_table(conn, "nodes") and "last_seen" not in columns(conn, "nodes"):
        conn.execute(dialect.ddl_for(dialect.dialect_of(conn), "ALTER TABLE nodes ADD COLUMN last_seen datetime"))


def clean_identifier(identifier: str) -> str:
    """Collapse repeated or blank path segments of an OIDC provider identifier
    (``https://issuer//sub`` → ``https://issuer/sub``)."""
    if identifier == "":
        return identifier
    identifier = identifier.strip()
    try:
        parts = urlsplit(identifier)
    except ValueError:
        parts = None
    if parts is not None and parts.scheme:
        if not parts.netloc and not parts.path.startswith("/"):
            return urlunsplit(parts._replace(scheme=parts.scheme.lower()))  # opaque (urn:…)
        segments = [s.strip() for s in parts.path.split("/")]
        segments = [s for s in segments if s]
        path = "/" + "/".join(segments) if segments else ""
        return urlunsplit(parts._replace(scheme=parts.scheme.lower(), path=path))
    segments = [s.strip() for s in identifier.split("/")]
    return "/".join(s for s in segments if s)


def clean_provider_identifiers(conn: sqlite3.Connection, ctx: Context) -> None:
    """202505141324: normalise ``users.provider_identifier``."""
    if not has_table(conn, "users"):
        return
    where = " AND deleted_at IS NULL" if "deleted_at" in columns(conn, "users") else ""
    rows = conn.execute(f"SELECT id, provider_identifier FROM users WHERE provider_identifier IS NOT NULL{where}").fetchall()
    for user_id, ident in rows:
        cleaned = clean_identifier(ident)
        if cleaned != ident:
            conn.execute("UPDATE users SET provider_identifier = ? WHERE id = ?", (cleaned, user_id))


# --- 0.27 -------------------------------------------------------------------------------

def rebuild_tables(conn: sqlite3.Connection, ctx: Context) -> None:
    """202507021200: recreate users, pre_auth_keys, api_keys, nodes and policies in the exact
    layout, keeping every row (and each table's AUTOINCREMENT counter); drop a leftover
    routes table. SQLite only, as in headscale (PostgreSQL tables were made by GORM and are
    left as they are)."""
    if dialect.dialect_of(conn) == dialect.POSTGRES:
        return
    conn.execute("DROP TABLE IF EXISTS routes")
    sequences = {}
    if has_table(conn, "sqlite_sequence"):
        sequences = dict(conn.execute("SELECT name, seq FROM sqlite_sequence").fetchall())
    for table in REBUILT_TABLES:
        temp = f"{table}__rebuild"
        conn.execute(f"DROP TABLE IF EXISTS {temp}")
        conn.execute(create_statement(table).replace(f"CREATE TABLE {table}(", f"CREATE TABLE {temp}(", 1))
        if not has_table(conn, table):
            continue
        old = set(columns(conn, table))
        dest, src = [], []
        for col in columns(conn, temp):
            if col in old:
                dest.append(col)
                src.append(f'"{col}"')
            elif col == "tags" and table == "nodes" and "forced_tags" in old:
                dest.append(col)
                src.append('"forced_tags"')
        conn.execute(f"INSERT INTO {temp} ({', '.join(dest)}) SELECT {', '.join(src)} FROM \"{table}\"")
    for table in REBUILT_TABLES:
        conn.execute(f'DROP TABLE IF EXISTS "{table}"')
    for table in REBUILT_TABLES:
        conn.execute(f"ALTER TABLE {table}__rebuild RENAME TO {table}")
        seq = sequences.get(table)
        if seq:
            updated = conn.execute(
                "UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = ?", (seq, table)
            ).rowcount
            if not updated:
                conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (table, seq))
        for stmt in index_statements(table):
            conn.execute(stmt)


def drop_old_tables(conn: sqlite3.Connection, ctx: Context) -> None:
    """202510311551: tables of older headscale releases."""
    for table in ("namespaces", "machines", "shared_machines", "kvs", "pre_auth_key_acl_tags", "routes"):
        conn.execute(f'DROP TABLE IF EXISTS "{table}"')


def drop_old_indexes(conn: sqlite3.Connection, ctx: Context) -> None:
    """202511101554-drop-old-idx."""
    for index in ("idx_namespaces_deleted_at", "idx_routes_deleted_at", "idx_shared_machines_deleted_at"):
        conn.execute(f'DROP INDEX IF EXISTS "{index}"')


# --- 0.28 -------------------------------------------------------------------------------

def pre_auth_key_prefix_hash(conn: sqlite3.Connection, ctx: Context) -> None:
    """202511011637-preauthkey-bcrypt: keys become prefix + bcrypt hash; legacy keys stay."""
    cols = columns(conn, "pre_auth_keys")
    if "prefix" not in cols:
        conn.execute("ALTER TABLE pre_auth_keys ADD COLUMN prefix text")
    if "hash" not in cols:
        conn.execute(dialect.ddl_for(dialect.dialect_of(conn), "ALTER TABLE pre_auth_keys ADD COLUMN hash blob"))
    conn.execute(create_statement("idx_pre_auth_keys_prefix").replace("INDEX ", "INDEX IF NOT EXISTS ", 1))


def single_line_user_indexes(conn: sqlite3.Connection, ctx: Context) -> None:
    """202511122344-remove-newline-index: recreate the user identity indexes in one line."""
    names = ("idx_provider_identifier", "idx_name_provider_identifier", "idx_name_no_provider_identifier")
    for name in names:
        conn.execute(f"DROP INDEX IF EXISTS {name}")
    for name in names:
        conn.execute(create_statement(name))


def forced_tags_to_tags(conn: sqlite3.Connection, ctx: Context) -> None:
    """202511131445-node-forced-tags-to-tags."""
    cols = columns(conn, "nodes")
    if "forced_tags" in cols and "tags" not in cols:
        conn.execute("ALTER TABLE nodes RENAME COLUMN forced_tags TO tags")


def _latest_policy(conn: sqlite3.Connection) -> str | None:
    if not has_table(conn, "policies"):
        return None
    row = conn.execute("SELECT data FROM policies WHERE deleted_at IS NULL ORDER BY id DESC LIMIT 1").fetchone()
    return row[0] if row else None


def request_tags_to_tags(conn: sqlite3.Connection, ctx: Context) -> None:
    """202601121700-migrate-hostinfo-request-tags: tags a 0.27 client requested
    (``host_info.RequestTags``) join ``nodes.tags`` when the policy lets the node's user own
    them. No policy, or one we cannot read: skip (tags are re-checked on reconnect)."""
    policy = ctx.policy if ctx.policy is not None else _latest_policy(conn)
    if not policy:
        return
    users = [
        UserRow(uid, name or "", email or "", pi)
        for uid, name, email, pi in conn.execute(
            "SELECT id, name, email, provider_identifier FROM users WHERE deleted_at IS NULL"
        )
    ]
    try:
        owners = TagOwners(policy, users)
    except PolicyUnreadable:
        return
    live_users = {u.id for u in users}
    rows = conn.execute("SELECT id, user_id, tags, host_info FROM nodes WHERE host_info IS NOT NULL").fetchall()
    for node_id, user_id, tags_text, host_info in rows:
        hostinfo = decode_object(host_info)
        requested = (hostinfo or {}).get("RequestTags") or []
        if not isinstance(requested, list) or not requested:
            continue
        existing = list(decode_list(tags_text))
        owner = user_id if user_id in live_users else None
        validated = [t for t in requested if isinstance(t, str) and owners.user_may_own(owner, t) and t not in existing]
        if not validated:
            continue
        merged = sorted(set(existing) | set(validated))
        conn.execute("UPDATE nodes SET tags = ? WHERE id = ?", (json.dumps(merged, separators=(",", ":")), node_id))


# --- 0.29 -------------------------------------------------------------------------------

def clear_tagged_node_user(conn: sqlite3.Connection, ctx: Context) -> None:
    """202602201200-clear-tagged-node-user-id: tagged nodes are owned by their tags.
    ('null', '' and '[]' all mean "no tags".)"""
    conn.execute(
        "UPDATE nodes SET user_id = NULL"
        " WHERE tags IS NOT NULL AND tags != '[]' AND tags != '' AND tags != 'null'"
    )


def clear_zero_expiry(conn: sqlite3.Connection, ctx: Context) -> None:
    """202605221435-clear-zero-time-node-expiry: Go's zero time ('0001-01-01 …') meant
    "no expiry"; make it NULL."""
    conn.execute("UPDATE nodes SET expiry = NULL WHERE expiry IS NOT NULL AND expiry < '1900-01-01'")


def recover_untagged_node_user(conn: sqlite3.Connection, ctx: Context) -> None:
    """202606181200-recover-null-tags-node-user-id: an early 0.29.0 cleared user_id on
    untagged nodes stored with tags='null'; re-derive the owner from the node's pre-auth key."""
    conn.execute(
        "UPDATE nodes SET user_id = (SELECT k.user_id FROM pre_auth_keys k WHERE k.id = nodes.auth_key_id)"
        " WHERE user_id IS NULL AND auth_key_id IS NOT NULL"
        " AND (tags IS NULL OR tags = '' OR tags = '[]' OR tags = 'null')"
    )


STEPS: tuple[Migration, ...] = (
    Migration("202501221827", drop_orphan_routes, "0.25"),
    Migration("202501311657", noop, "0.25"),
    Migration("202502070949", clear_dangling_auth_keys, "0.25"),
    Migration("202502131714", routes_to_approved_routes, "0.26"),
    Migration("202502171819", noop, "0.26"),
    Migration("202505091439", add_last_seen, "0.26"),
    Migration("202505141324", clean_provider_identifiers, "0.26"),
    Migration("202507021200", rebuild_tables, "0.27"),
    Migration("202510311551", drop_old_tables, "0.27"),
    Migration("202511101554-drop-old-idx", drop_old_indexes, "0.27"),
    Migration("202511011637-preauthkey-bcrypt", pre_auth_key_prefix_hash, "0.28"),
    Migration("202511122344-remove-newline-index", single_line_user_indexes, "0.28"),
    Migration("202511131445-node-forced-tags-to-tags", forced_tags_to_tags, "0.28"),
    Migration("202601121700-migrate-hostinfo-request-tags", request_tags_to_tags, "0.28"),
    Migration("202602201200-clear-tagged-node-user-id", clear_tagged_node_user, "0.29"),
    Migration("202605221435-clear-zero-time-node-expiry", clear_zero_expiry, "0.29"),
    Migration("202606181200-recover-null-tags-node-user-id", recover_untagged_node_user, "0.29"),
)
