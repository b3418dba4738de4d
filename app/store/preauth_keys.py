"""pre_auth_keys table ↔ app.core.model.PreAuthKey.

New keys are ``hskey-auth-<prefix>-<secret>``, stored as prefix + bcrypt(secret) with
``key`` = '' (see keygen.py). Keys from before headscale 0.28 are plaintext in ``key`` with no
prefix; they still validate. A key is user-owned (``user_id``) or tagged (``tags``, with
``user_id`` only recording who made it); one of the two is required. Validation here finds
the key and checks the secret; whether it is expired or used up is the caller's call
(``PreAuthKey.is_expired(now)``, ``used``/``reusable``), as in headscale.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from app.core.model import PreAuthKey

from .base import IntegrityErrors, QueryBase, integrity_error
from .codec import decode_list, encode_list, format_time, parse_bool, parse_time
from .errors import Conflict, Invalid, NotFound
from .keygen import (
    PREFIX_LENGTH,
    SECRET_LENGTH,
    check_secret_async,
    hash_secret_async,
    random_urlsafe,
    split_new_key,
)

AUTH_KEY_PREFIX = "hskey-auth-"
_COLUMNS = "id, prefix, user_id, reusable, ephemeral, used, tags, created_at, expiration"


def pre_auth_key_from_row(row: Any) -> PreAuthKey:
    return PreAuthKey(
        id=row[0],
        prefix=row[1] or "",
        user_id=row[2],
        reusable=parse_bool(row[3]),
        ephemeral=parse_bool(row[4]),
        used=parse_bool(row[5]),
        tags=decode_list(row[6]),
        created_at=parse_time(row[7]),
        expiration=parse_time(row[8]),
    )


def normalise_tags(tags: Iterable[str]) -> tuple[str, ...]:
    """Unique, sorted; each must start with ``tag:``."""
    out = sorted(set(tags))
    for tag in out:
        if not tag.startswith("tag:"):
            raise Invalid(f"auth-key tag is invalid: {tag!r} did not begin with 'tag:'", entity="pre_auth_key")
    return tuple(out)


class PreAuthKeyQueries(QueryBase):
    async def create_pre_auth_key(
        self,
        user_id: int | None,
        *,
        reusable: bool = False,
        ephemeral: bool = False,
        expiration: datetime | None = None,
        tags: Iterable[str] = (),
    ) -> tuple[PreAuthKey, str]:
        """Create a key; returns the record and the full key (shown once, never stored)."""
        clean_tags = normalise_tags(tags)
        if user_id is None and not clean_tags:
            raise Invalid("auth-key must be either tagged or owned by user", entity="pre_auth_key")
        prefix = random_urlsafe(PREFIX_LENGTH)
        secret = random_urlsafe(SECRET_LENGTH)
        hashed = await hash_secret_async(secret)
        try:
            async with self._write() as conn:
                if user_id is not None:
                    found = await conn.execute_fetchall(
                        "SELECT 1 FROM users WHERE id = ? AND deleted_at IS NULL", (user_id,)
                    )
                    if not found:
                        raise NotFound(f"user {user_id} not found", entity="user")
                cur = await conn.execute(
                    "INSERT INTO pre_auth_keys (key, prefix, hash, user_id, reusable, ephemeral, used, tags,"
                    " expiration, created_at) VALUES ('', ?, ?, ?, ?, ?, false, ?, ?, ?)",
                    (prefix, hashed, user_id, bool(reusable), bool(ephemeral), encode_list(clean_tags),
                     format_time(expiration), format_time(self._now())),
                )
                key_id = int(cur.lastrowid or 0)
        except IntegrityErrors as exc:
            raise integrity_error(exc, "pre_auth_key") from None
        return await self.get_pre_auth_key(key_id), f"{AUTH_KEY_PREFIX}{prefix}-{secret}"

    async def get_pre_auth_key(self, key_id: int) -> PreAuthKey:
        row = await self._fetchone(f"SELECT {_COLUMNS} FROM pre_auth_keys WHERE id = ?", (key_id,))
        if row is None:
            raise NotFound(f"pre-auth key {key_id} not found", entity="pre_auth_key")
        return pre_auth_key_from_row(row)

    async def list_pre_auth_keys(self, *, user_id: int | None = None) -> list[PreAuthKey]:
        if user_id is None:
            rows = await self._fetchall(f"SELECT {_COLUMNS} FROM pre_auth_keys ORDER BY id")
        else:
            rows = await self._fetchall(
                f"SELECT {_COLUMNS} FROM pre_auth_keys WHERE user_id = ? ORDER BY id", (user_id,)
            )
        return [pre_auth_key_from_row(r) for r in rows]

    async def validate_pre_auth_key(self, full_key: str) -> PreAuthKey:
        """The key ``full_key`` names, if its secret matches. Raises Invalid (malformed) or
        NotFound (unknown prefix / wrong secret / unknown legacy key)."""
        if not full_key:
            raise Invalid("failed to parse auth-key", entity="pre_auth_key")
        try:
            parts = split_new_key(full_key, AUTH_KEY_PREFIX)
        except ValueError as exc:
            raise Invalid(f"failed to parse auth-key: {exc}", entity="pre_auth_key") from None
        if parts is None:
            row = await self._fetchone(
                f"SELECT {_COLUMNS} FROM pre_auth_keys WHERE key = ? AND key != '' ORDER BY id LIMIT 1",
                (full_key,),
            )
            if row is None:
                raise NotFound("auth-key not found", entity="pre_auth_key")
            return pre_auth_key_from_row(row)
        prefix, secret = parts
        row = await self._fetchone(f"SELECT {_COLUMNS}, hash FROM pre_auth_keys WHERE prefix = ?", (prefix,))
        if row is None or not await check_secret_async(row[-1], secret):
            raise NotFound("auth-key not found", entity="pre_auth_key")
        return pre_auth_key_from_row(row)

    async def expire_pre_auth_key(self, key_id: int) -> PreAuthKey:
        """Set the expiration to now."""
        async with self._write() as conn:
            cur = await conn.execute(
                "UPDATE pre_auth_keys SET expiration = ? WHERE id = ?", (format_time(self._now()), key_id)
            )
            if cur.rowcount == 0:
                raise NotFound(f"pre-auth key {key_id} not found", entity="pre_auth_key")
        return await self.get_pre_auth_key(key_id)

    async def use_pre_auth_key(self, key_id: int) -> PreAuthKey:
        """Mark the key used; Conflict if it already was (guards single-use keys against two
        registrations racing)."""
        async with self._write() as conn:
            cur = await conn.execute(
                "UPDATE pre_auth_keys SET used = true"
                " WHERE id = ? AND (used IS NULL OR used = false OR used = 'false')", (key_id,)
            )
            if cur.rowcount == 0:
                exists = await conn.execute_fetchall("SELECT 1 FROM pre_auth_keys WHERE id = ?", (key_id,))
                if not exists:
                    raise NotFound(f"pre-auth key {key_id} not found", entity="pre_auth_key")
                raise Conflict("authkey already used", entity="pre_auth_key")
        return await self.get_pre_auth_key(key_id)

    async def delete_pre_auth_key(self, key_id: int) -> None:
        """Delete the key; nodes registered with it keep running with ``auth_key_id`` cleared."""
        async with self._write() as conn:
            await conn.execute("UPDATE nodes SET auth_key_id = NULL WHERE auth_key_id = ?", (key_id,))
            cur = await conn.execute("DELETE FROM pre_auth_keys WHERE id = ?", (key_id,))
            if cur.rowcount == 0:
                raise NotFound(f"pre-auth key {key_id} not found", entity="pre_auth_key")

