from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from app.core.model import Node, RegisterMethod
from app.store import NotFound

from .conftest import T0


def key(prefix: str, n: int) -> str:
    return f"{prefix}{n:064x}"


def make_node(n: int, user_id: int | None, **kw) -> Node:
    base = {
        "id": 0,
        "machine_key": key("mkey:", n),
        "node_key": key("nodekey:", n),
        "disco_key": key("discokey:", n),
        "hostname": f"host{n}",
        "given_name": f"host{n}",
        "user_id": user_id,
        "ipv4": f"100.64.0.{n}",
        "ipv6": f"fd7a:115c:a1e0::{n}",
        "endpoints": ("192.0.2.1:41641", "[2001:db8::1]:41641"),
        "hostinfo": {"Hostname": f"host{n}", "OS": "linux", "RoutableIPs": ["10.0.0.0/24"],
                     "NetInfo": {"PreferredDERP": 1}},
        "register_method": RegisterMethod.CLI,
    }
    base.update(kw)
    return Node(**base)


async def test_insert_get_roundtrip(db, clock):
    user = await db.create_user("alice")
    clock.advance(5)
    expiry = datetime(2026, 6, 1, 12, 30, 15, 123456, tzinfo=UTC)
    node = make_node(1, user.id, expiry=expiry, last_seen=T0, approved_routes=("10.0.0.0/24",))
    stored = await db.insert_node(node)
    assert stored.id == 1
    assert stored.created_at == T0 + timedelta(seconds=5) == stored.updated_at
    for field in ("machine_key", "node_key", "disco_key", "hostname", "given_name", "user_id", "ipv4",
                  "ipv6", "endpoints", "hostinfo", "register_method", "tags", "auth_key_id", "expiry",
                  "last_seen", "approved_routes"):
        assert getattr(stored, field) == getattr(node, field), field
    assert stored.routable_ips == ("10.0.0.0/24",) and stored.home_derp == 1
    assert await db.get_node(1) == stored
    assert await db.get_node_by_node_key(node.node_key) == stored
    assert await db.get_node_by_machine_key(node.machine_key) == stored
    assert not stored.ephemeral


async def test_insert_many_in_one_transaction(db, clock):
    """insert_nodes (the registration group commit): every record as insert_node would store
    it, in order; a record that cannot be written leaves none of the batch behind."""
    user = await db.create_user("alice")
    nodes = [make_node(n, user.id, created_at=None) for n in (1, 2, 3)]
    stored = await db.insert_nodes(nodes)
    assert [s.id for s in stored] == [1, 2, 3]
    for s, n in zip(stored, nodes, strict=True):
        assert s == await db.get_node(s.id)
        assert (s.node_key, s.ipv4, s.hostinfo, s.created_at) == (n.node_key, n.ipv4, n.hostinfo, T0)
    assert await db.insert_nodes([]) == []
    with pytest.raises(NotFound):
        await db.insert_nodes([make_node(4, user.id), make_node(5, 999)])
    assert [n.id for n in await db.list_nodes()] == [1, 2, 3]


async def test_columns_are_stored_as_headscale_stores_them(db):
    user = await db.create_user("alice")
    await db.insert_node(make_node(1, user.id, expiry=datetime(2026, 6, 1, 0, 0, 0, 500000, tzinfo=UTC)))
    await db.insert_node(make_node(2, None, tags=("tag:a", "tag:b"), ipv6=None, hostinfo=None, endpoints=()))
    async with db._read() as conn:
        rows = await conn.execute_fetchall(
            "SELECT endpoints, host_info, tags, approved_routes, expiry, last_seen, ipv6, created_at, user_id"
            " FROM nodes ORDER BY id")
    one, two = rows
    assert one[0] == '["192.0.2.1:41641","[2001:db8::1]:41641"]'
    assert json.loads(one[1])["OS"] == "linux" and ", " not in one[1]
    assert one[2] == "[]" and one[3] == "[]"
    if db.dialect == "postgres":  # timestamptz, as headscale's GORM tables hold them
        assert one[4] == datetime(2026, 6, 1, 0, 0, 0, 500000, tzinfo=UTC)
        assert one[7] == datetime(2026, 1, 1, tzinfo=UTC)
    else:
        assert one[4] == "2026-06-01 00:00:00.5+00:00"
        assert one[7] == "2026-01-01 00:00:00+00:00"
    assert one[5] is None
    assert two[0] == "[]" and two[1] is None and two[2] == '["tag:a","tag:b"]' and two[6] is None
    assert two[8] is None


async def test_list_and_list_by_user(db):
    alice = await db.create_user("alice")
    bob = await db.create_user("bob")
    a1 = await db.insert_node(make_node(1, alice.id))
    b1 = await db.insert_node(make_node(2, bob.id))
    a2 = await db.insert_node(make_node(3, alice.id))
    t = await db.insert_node(make_node(4, None, tags=("tag:srv",)))
    assert [n.id for n in await db.list_nodes()] == [a1.id, b1.id, a2.id, t.id]
    assert [n.id for n in await db.list_nodes(user_id=alice.id)] == [a1.id, a2.id]
    assert await db.list_nodes_by_user(bob.id) == [b1]


async def test_update_full_record(db, clock):
    user = await db.create_user("alice")
    node = await db.insert_node(make_node(1, user.id))
    clock.advance(30)
    changed = replace(node, given_name="renamed", tags=("tag:x",), user_id=None, approved_routes=("0.0.0.0/0",),
                      expiry=None, node_key=key("nodekey:", 99), hostinfo={"OS": "macOS"})
    stored = await db.update_node(changed)
    assert stored.given_name == "renamed" and stored.tags == ("tag:x",) and stored.user_id is None
    assert stored.approved_routes == ("0.0.0.0/0",) and stored.hostinfo == {"OS": "macOS"}
    assert stored.updated_at == T0 + timedelta(seconds=30) and stored.created_at == T0
    assert await db.get_node_by_node_key(key("nodekey:", 99)) == stored
    with pytest.raises(NotFound):
        await db.get_node_by_node_key(key("nodekey:", 1))
    with pytest.raises(NotFound):
        await db.update_node(replace(node, id=77))


async def test_cheap_updates(db, clock):
    user = await db.create_user("alice")
    node = await db.insert_node(make_node(1, user.id))
    seen = T0 + timedelta(minutes=3)
    await db.set_node_last_seen(node.id, seen)
    await db.set_node_endpoints(node.id, ["198.51.100.7:1234"])
    await db.set_node_hostinfo(node.id, {"OS": "windows"})
    await db.set_node_expiry(node.id, T0 + timedelta(days=1))
    got = await db.get_node(node.id)
    assert got.last_seen == seen and got.endpoints == ("198.51.100.7:1234",)
    assert got.hostinfo == {"OS": "windows"} and got.expiry == T0 + timedelta(days=1)
    await db.set_node_hostinfo(node.id, None)
    await db.set_node_last_seen(node.id, None)
    got = await db.get_node(node.id)
    assert got.hostinfo is None and got.last_seen is None
    other = await db.insert_node(make_node(2, user.id))
    await db.set_nodes_last_seen({node.id: T0, other.id: seen, 999: seen})
    assert (await db.get_node(other.id)).last_seen == seen
    with pytest.raises(NotFound):
        await db.set_node_last_seen(999, seen)


async def test_delete(db):
    user = await db.create_user("alice")
    node = await db.insert_node(make_node(1, user.id))
    await db.delete_node(node.id)
    with pytest.raises(NotFound):
        await db.get_node(node.id)
    with pytest.raises(NotFound):
        await db.delete_node(node.id)


async def test_missing_user_or_key_is_not_found(db):
    with pytest.raises(NotFound):
        await db.insert_node(make_node(1, 42))
    with pytest.raises(NotFound):
        await db.insert_node(make_node(1, None, tags=("tag:a",), auth_key_id=42))


async def test_ephemeral_comes_from_the_pre_auth_key(db):
    user = await db.create_user("alice")
    key_rec, _ = await db.create_pre_auth_key(user.id, ephemeral=True)
    node = await db.insert_node(make_node(1, user.id, auth_key_id=key_rec.id,
                                          register_method=RegisterMethod.AUTH_KEY))
    assert node.ephemeral and node.auth_key_id == key_rec.id
    await db.delete_pre_auth_key(key_rec.id)
    after = await db.get_node(node.id)
    assert after.auth_key_id is None and not after.ephemeral


async def test_deleting_a_user_cascades_never_happens_silently(db):
    # headscale refuses to delete a user with nodes; the FK cascade is only a backstop.
    user = await db.create_user("alice")
    await db.insert_node(make_node(1, user.id))
    async with db._write() as conn:
        await conn.execute("DELETE FROM users WHERE id = ?", (user.id,))
    assert await db.list_nodes() == []
