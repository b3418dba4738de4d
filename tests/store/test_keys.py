"""Pre-auth keys and API keys: formats, hashing, legacy keys, lifecycle."""

from __future__ import annotations

import re
from datetime import timedelta

import bcrypt
import pytest

from app.store import Conflict, Invalid, NotFound

from .conftest import T0

AUTH_RE = re.compile(r"^hskey-auth-([A-Za-z0-9_-]{12})-([A-Za-z0-9_-]{64})$")
API_RE = re.compile(r"^hskey-api-([A-Za-z0-9_-]{12})-([A-Za-z0-9_-]{64})$")


async def test_pre_auth_key_create_and_validate(db):
    user = await db.create_user("alice")
    exp = T0 + timedelta(hours=1)
    rec, full = await db.create_pre_auth_key(user.id, reusable=True, expiration=exp)
    m = AUTH_RE.match(full)
    assert m, full
    assert rec.prefix == m.group(1) and rec.user_id == user.id and rec.reusable and not rec.ephemeral
    assert rec.expiration == exp and rec.created_at == T0 and not rec.used and rec.tags == ()
    assert rec.masked == f"hskey-auth-{rec.prefix}-***"
    async with db._read() as conn:
        key, prefix, hashed = (await conn.execute_fetchall("SELECT key, prefix, hash FROM pre_auth_keys"))[0]
    assert key == "" and prefix == rec.prefix
    assert isinstance(hashed, bytes) and hashed.startswith(b"$2a$10$")
    assert bcrypt.checkpw(m.group(2).encode(), hashed)  # hash of the secret part only
    assert await db.validate_pre_auth_key(full) == rec


async def test_pre_auth_key_wrong_secret_and_malformed(db):
    user = await db.create_user("alice")
    _, full = await db.create_pre_auth_key(user.id)
    wrong = full[:-1] + ("A" if full[-1] != "A" else "B")
    with pytest.raises(NotFound):
        await db.validate_pre_auth_key(wrong)
    for bad in ("hskey-auth-short", full[:-1], full + "x", full[:23] + "_" + full[24:], "hskey-auth-" + "!" * 77, ""):
        with pytest.raises(Invalid):
            await db.validate_pre_auth_key(bad)
    with pytest.raises(NotFound):
        await db.validate_pre_auth_key("hskey-auth-AAAAAAAAAAAA-" + "B" * 64)


async def test_legacy_plaintext_pre_auth_key(db):
    user = await db.create_user("alice")
    async with db._write() as conn:
        await conn.execute(
            "INSERT INTO pre_auth_keys (key, user_id, reusable, ephemeral, used, tags, created_at)"
            " VALUES ('09b28f1b3c5e2a7d', ?, false, true, false, NULL, '2024-09-27 10:00:00+00:00')", (user.id,))
    rec = await db.validate_pre_auth_key("09b28f1b3c5e2a7d")
    assert rec.prefix == "" and rec.ephemeral and rec.masked == "***"
    with pytest.raises(NotFound):
        await db.validate_pre_auth_key("nope")


async def test_tagged_keys_and_rules(db):
    rec, _ = await db.create_pre_auth_key(None, tags=["tag:b", "tag:a", "tag:b"])
    assert rec.tags == ("tag:a", "tag:b") and rec.user_id is None
    with pytest.raises(Invalid):
        await db.create_pre_auth_key(None)
    with pytest.raises(Invalid):
        await db.create_pre_auth_key(None, tags=["server"])
    with pytest.raises(NotFound):
        await db.create_pre_auth_key(42)


async def test_pre_auth_key_lifecycle(db, clock):
    alice = await db.create_user("alice")
    bob = await db.create_user("bob")
    k1, _ = await db.create_pre_auth_key(alice.id)
    k2, _ = await db.create_pre_auth_key(bob.id, ephemeral=True)
    assert [k.id for k in await db.list_pre_auth_keys()] == [k1.id, k2.id]
    assert await db.list_pre_auth_keys(user_id=bob.id) == [k2]
    used = await db.use_pre_auth_key(k1.id)
    assert used.used
    with pytest.raises(Conflict):
        await db.use_pre_auth_key(k1.id)
    clock.advance(10)
    expired = await db.expire_pre_auth_key(k2.id)
    assert expired.expiration == T0 + timedelta(seconds=10) and expired.is_expired(clock.now())
    await db.delete_pre_auth_key(k1.id)
    assert await db.list_pre_auth_keys() == [expired]
    for call in (db.get_pre_auth_key, db.delete_pre_auth_key, db.expire_pre_auth_key, db.use_pre_auth_key):
        with pytest.raises(NotFound):
            await call(k1.id)


async def test_api_key_create_validate(db):
    exp = T0 + timedelta(days=90)
    rec, full = await db.create_api_key(exp)
    m = API_RE.match(full)
    assert m and rec.prefix == m.group(1) and rec.expiration == exp and rec.created_at == T0
    assert rec.last_seen is None and rec.masked == f"hskey-api-{rec.prefix}-***"
    assert await db.validate_api_key(full) == rec
    async with db._read() as conn:
        hashed = (await conn.execute_fetchall("SELECT hash FROM api_keys"))[0][0]
    assert bcrypt.checkpw(m.group(2).encode(), hashed)
    with pytest.raises(NotFound):
        await db.validate_api_key(full[:-1] + ("A" if full[-1] != "A" else "B"))
    with pytest.raises(Invalid):
        await db.validate_api_key("hskey-api-tooshort")
    with pytest.raises(Invalid):
        await db.validate_api_key("no-dot-no-prefix")


async def test_legacy_api_key(db):
    # headscale < 0.28: "<prefix>.<secret>", bcrypt of the secret under the short prefix
    hashed = bcrypt.hashpw(b"s3cretsecretsecretsecretsecret00", bcrypt.gensalt(rounds=4))
    async with db._write() as conn:
        await conn.execute("INSERT INTO api_keys (prefix, hash, created_at) VALUES ('abcdefg', ?, NULL)", (hashed,))
    rec = await db.validate_api_key("abcdefg.s3cretsecretsecretsecretsecret00")
    assert rec.prefix == "abcdefg"
    with pytest.raises(NotFound):
        await db.validate_api_key("abcdefg.wrong")


async def test_api_key_lifecycle(db, clock):
    k1, _ = await db.create_api_key()
    k2, _ = await db.create_api_key()
    assert await db.list_api_keys() == [k1, k2]
    assert await db.get_api_key_by_prefix(k1.prefix) == k1
    assert await db.get_api_key_by_prefix(k1.masked) == k1
    assert await db.get_api_key_by_prefix(f"hskey-api-{k1.prefix}") == k1
    clock.advance(5)
    await db.touch_api_key(k1.id)
    assert (await db.get_api_key(k1.id)).last_seen == T0 + timedelta(seconds=5)
    expired = await db.expire_api_key(k2.id)
    assert expired.is_expired(clock.now())
    await db.delete_api_key(k1.id)
    assert [k.id for k in await db.list_api_keys()] == [k2.id]
    for call in (db.get_api_key, db.delete_api_key, db.expire_api_key, db.touch_api_key):
        with pytest.raises(NotFound):
            await call(k1.id)
    with pytest.raises(NotFound):
        await db.get_api_key_by_prefix("zzzzzzzzzzzz")


async def test_api_keys_from_a_headscale_dump_validate_by_prefix_lookup(tmp_path):
    from app.store import Database

    from .conftest import load_dump

    path = load_dump("failing-node-preauth-constraint_dump.sql", tmp_path / "db.sqlite")
    db = await Database.open(str(path))
    try:
        keys = await db.list_api_keys()
        assert [k.prefix for k in keys] == ["hFKcRjLyfw", "88Wbitubag"]
        assert keys[0].expiration is not None and keys[0].expiration.year == 2023
        with pytest.raises(NotFound):
            await db.validate_api_key("hFKcRjLyfw.not-the-secret")
    finally:
        await db.close()
