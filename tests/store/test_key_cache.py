"""A reusable key costs one bcrypt per process; a wrong secret always costs a full bcrypt."""

from __future__ import annotations

import time

import bcrypt
import pytest

from app.store import NotFound, keygen


@pytest.fixture
def counted(monkeypatch):
    """Count real bcrypt checks (the real function still runs)."""
    calls = []
    real = bcrypt.checkpw

    def checkpw(secret: bytes, hashed: bytes) -> bool:
        calls.append(hashed)
        return real(secret, hashed)

    monkeypatch.setattr(keygen.bcrypt, "checkpw", checkpw)
    monkeypatch.setattr(keygen, "_verified", {})
    return calls


async def test_reusable_key_is_bcrypt_checked_once(db, counted):
    user = await db.create_user("alice")
    rec, full = await db.create_pre_auth_key(user.id, reusable=True)
    for _ in range(50):
        assert (await db.validate_pre_auth_key(full)).id == rec.id
    assert len(counted) == 1
    t0 = time.perf_counter()
    for _ in range(200):
        await db.validate_pre_auth_key(full)
    assert (time.perf_counter() - t0) / 200 < 0.02     # far below one bcrypt (~50 ms)
    assert len(counted) == 1


async def test_wrong_secret_pays_bcrypt_every_time(db, counted):
    user = await db.create_user("alice")
    _, full = await db.create_pre_auth_key(user.id, reusable=True)
    await db.validate_pre_auth_key(full)           # the right key is now remembered
    wrong = full[:-1] + ("A" if full[-1] != "A" else "B")
    for _ in range(3):
        t0 = time.perf_counter()
        with pytest.raises(NotFound):
            await db.validate_pre_auth_key(wrong)
        assert time.perf_counter() - t0 > 0.01      # a cost-10 bcrypt, not a digest compare
    assert len(counted) == 4
    assert (await db.validate_pre_auth_key(full)) is not None
    assert len(counted) == 4


async def test_remembered_digest_is_tied_to_the_stored_hash(db, counted):
    """A key deleted and a new one with another secret: nothing carries over."""
    user = await db.create_user("alice")
    rec, full = await db.create_pre_auth_key(user.id, reusable=True)
    await db.validate_pre_auth_key(full)
    await db.delete_pre_auth_key(rec.id)
    with pytest.raises(NotFound):
        await db.validate_pre_auth_key(full)
    assert all(len(v) == 32 and full.encode()[-64:] not in v for v in keygen._verified.values())


async def test_api_key_is_bcrypt_checked_once(db, counted):
    _, full = await db.create_api_key(None)
    for _ in range(5):
        await db.validate_api_key(full)
    assert len(counted) == 1
