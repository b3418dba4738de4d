from __future__ import annotations

import pytest

from app.core.model import Node, User
from app.store import Conflict, Invalid, NotFound
from app.store.users import validate_username

from .conftest import T0

MKEY = "mkey:" + "11" * 32
NKEY = "nodekey:" + "22" * 32


async def test_create_get_list(db):
    alice = await db.create_user("alice", display_name="Alice A", email="alice@example.com",
                                 profile_pic_url="https://p/a.png")
    assert alice == User(id=1, name="alice", display_name="Alice A", email="alice@example.com",
                         provider_identifier=None, provider="", profile_pic_url="https://p/a.png", created_at=T0)
    bob = await db.create_user("bob")
    assert await db.get_user(bob.id) == bob
    assert await db.list_users() == [alice, bob]
    assert await db.list_users(name="bob") == [bob]
    assert await db.list_users(email="alice@example.com") == [alice]
    assert await db.list_users(id=alice.id) == [alice]
    assert await db.list_users(id=alice.id, name="bob") == []
    assert await db.get_user_by_name("alice") == alice
    with pytest.raises(NotFound):
        await db.get_user(99)
    with pytest.raises(NotFound):
        await db.get_user_by_name("carol")


async def test_duplicate_local_names_conflict(db):
    await db.create_user("alice")
    with pytest.raises(Conflict):
        await db.create_user("alice")


async def test_oidc_users_may_share_a_name_but_not_an_identifier(db):
    a = await db.create_user("alice", provider_identifier="https://idp/1", provider="oidc")
    b = await db.create_user("alice", provider_identifier="https://idp/2", provider="oidc")
    assert a.id != b.id
    with pytest.raises(Conflict):
        await db.create_user("other", provider_identifier="https://idp/1", provider="oidc")
    with pytest.raises(Conflict):
        await db.get_user_by_name("alice")
    assert await db.get_user_by_provider_identifier("https://idp/2") == b


@pytest.mark.parametrize("name", ["a", "1abc", "-abc", "a b", "a@b@c", "a/b", ""])
async def test_invalid_names(db, name):
    with pytest.raises(Invalid):
        await db.create_user(name)


@pytest.mark.parametrize("name", ["ab", "alice@example.com", "a.b-c_d", "émile", "user1@"])
def test_valid_names(name):
    validate_username(name)


async def test_rename(db, clock):
    alice = await db.create_user("alice")
    await db.create_user("bob")
    clock.advance(60)
    renamed = await db.rename_user(alice.id, "alicia")
    assert renamed.name == "alicia" and renamed.created_at == T0
    with pytest.raises(Conflict):
        await db.rename_user(alice.id, "bob")
    with pytest.raises(Invalid):
        await db.rename_user(alice.id, "x")
    with pytest.raises(NotFound):
        await db.rename_user(42, "nobody")
    oidc = await db.create_user("olga", provider_identifier="https://idp/o", provider="oidc")
    with pytest.raises(Invalid):
        await db.rename_user(oidc.id, "olga2")


async def test_update_user(db):
    user = await db.create_user("olga", provider_identifier="https://idp/o", provider="oidc")
    from dataclasses import replace

    updated = await db.update_user(replace(user, display_name="Olga", email="o@example.com"))
    assert (updated.display_name, updated.email) == ("Olga", "o@example.com")
    with pytest.raises(NotFound):
        await db.update_user(replace(user, id=99))


async def test_delete_user_refuses_while_they_own_nodes(db):
    alice = await db.create_user("alice")
    node = await db.insert_node(Node(id=0, machine_key=MKEY, node_key=NKEY, user_id=alice.id))
    with pytest.raises(Conflict):
        await db.delete_user(alice.id)
    await db.delete_node(node.id)
    await db.delete_user(alice.id)
    with pytest.raises(NotFound):
        await db.get_user(alice.id)
    with pytest.raises(NotFound):
        await db.delete_user(alice.id)


async def test_delete_user_removes_their_keys_and_spares_tagged_nodes(db):
    alice = await db.create_user("alice")
    key, _ = await db.create_pre_auth_key(alice.id, tags=["tag:srv"])
    tagged = await db.insert_node(Node(id=0, machine_key=MKEY, node_key=NKEY, tags=("tag:srv",),
                                       auth_key_id=key.id))
    await db.delete_user(alice.id)
    assert await db.list_pre_auth_keys() == []
    survivor = await db.get_node(tagged.id)
    assert survivor.auth_key_id is None and survivor.tags == ("tag:srv",)


async def test_soft_deleted_rows_are_invisible(db):
    await db.create_user("alice")
    async with db._write() as conn:
        await conn.execute("UPDATE users SET deleted_at = '2025-01-01 00:00:00+00:00'")
    assert await db.list_users() == []
    with pytest.raises(NotFound):
        await db.get_user(1)
