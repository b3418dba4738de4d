"""api_keys table ↔ app.core.model.ApiKey.

New keys are ``hskey-api-<prefix>-<secret>`` (prefix + bcrypt(secret) stored, see keygen.py).
Keys from before headscale 0.28 are ``<prefix>.<secret>`` with bcrypt(secret) stored under
the short prefix; they still validate. Validation finds the key and checks the secret;
expiry is the caller's call (``ApiKey.is_expired(now)``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from app.core.model import ApiKey

from .base import IntegrityErrors, QueryBase, integrity_error
from .codec import format_time, parse_time
from .errors import Invalid, NotFound
from .keygen import (
    PREFIX_LENGTH,
    SECRET_LENGTH,
    check_secret_async,
    hash_secret_async,
    is_urlsafe,
    random_urlsafe,
    split_new_key,
)

API_KEY_PREFIX = "hskey-api-"
_COLUMNS = "id, prefix, created_at, expiration, last_seen"


def api_key_from_row(row: Any) -> ApiKey:
    return ApiKey(
        id=row[0],
        prefix=row[1] or "",
        created_at=parse_time(row[2]),
        expiration=parse_time(row[3]),
        last_seen=parse_time(row[4]),
    )


def parse_api_key_prefix(display: str) -> str:
    """``hskey-api-<prefix>-***``, ``hskey-api-<prefix>`` or ``<prefix>`` → the stored prefix.
    Anything else (legacy short prefixes) is returned as given."""
    if len(display) == PREFIX_LENGTH and is_urlsafe(display):
        return display
    if display.startswith(API_KEY_PREFIX):
        rest = display[len(API_KEY_PREFIX):]
        prefix = rest[:PREFIX_LENGTH]
        if len(prefix) < PREFIX_LENGTH or not is_urlsafe(prefix):
            raise Invalid("failed to parse API key prefix", entity="api_key")
        return prefix
    return display


class ApiKeyQueries(QueryBase):
    async def create_api_key(self, expiration: datetime | None = None) -> tuple[ApiKey, str]:
        """Create a key; returns the record and the full key (shown once, never stored)."""
        prefix = random_urlsafe(PREFIX_LENGTH)
        secret = random_urlsafe(SECRET_LENGTH)
        hashed = await hash_secret_async(secret)
        try:
            async with self._write() as conn:
                cur = await conn.execute(
                    "INSERT INTO api_keys (prefix, hash, expiration, created_at) VALUES (?, ?, ?, ?)",
                    (prefix, hashed, format_time(expiration), format_time(self._now())),
                )
                key_id = int(cur.lastrowid or 0)
        except IntegrityErrors as exc:
            raise integrity_error(exc, "api_key") from None
        return await self.get_api_key(key_id), f"{API_KEY_PREFIX}{prefix}-{secret}"

    async def get_api_key(self, key_id: int) -> ApiKey:
        row = await self._fetchone(f"SELECT {_COLUMNS} FROM api_keys WHERE id = ?", (key_id,))
        if row is None:
            raise NotFound(f"API key {key_id} not found", entity="api_key")
        return api_key_from_row(row)

    async def get_api_key_by_prefix(self, prefix: str) -> ApiKey:
        """By stored prefix, or any display form ``parse_api_key_prefix`` accepts."""
        row = await self._fetchone(
            f"SELECT {_COLUMNS} FROM api_keys WHERE prefix = ?", (parse_api_key_prefix(prefix),)
        )
        if row is None:
            raise NotFound("API key not found", entity="api_key")
        return api_key_from_row(row)

    async def list_api_keys(self) -> list[ApiKey]:
        rows = await self._fetchall(f"SELECT {_COLUMNS} FROM api_keys ORDER BY id")
        return [api_key_from_row(r) for r in rows]

    async def validate_api_key(self, full_key: str) -> ApiKey:
        """The key ``full_key`` names, if its secret matches. Raises Invalid (malformed) or
        NotFound (unknown prefix / wrong secret)."""
        if not full_key:
            raise Invalid("failed to parse API key", entity="api_key")
        try:
            parts = split_new_key(full_key, API_KEY_PREFIX)
        except ValueError as exc:
            raise Invalid(f"failed to parse API key: {exc}", entity="api_key") from None
        if parts is None:  # legacy <prefix>.<secret>
            prefix, dot, secret = full_key.partition(".")
            if not dot or not prefix:
                raise Invalid("failed to parse API key", entity="api_key")
        else:
            prefix, secret = parts
        row = await self._fetchone(f"SELECT {_COLUMNS}, hash FROM api_keys WHERE prefix = ?", (prefix,))
        if row is None or not await check_secret_async(row[-1], secret):
            raise NotFound("API key not found", entity="api_key")
        return api_key_from_row(row)

    async def _update(self, key_id: int, column: str, value: Any) -> None:
        async with self._write() as conn:
            cur = await conn.execute(f"UPDATE api_keys SET {column} = ? WHERE id = ?", (value, key_id))
            if cur.rowcount == 0:
                raise NotFound(f"API key {key_id} not found", entity="api_key")

    async def expire_api_key(self, key_id: int) -> ApiKey:
        """Set the expiration to now."""
        await self._update(key_id, "expiration", format_time(self._now()))
        return await self.get_api_key(key_id)

    async def touch_api_key(self, key_id: int, when: datetime | None = None) -> None:
        """Record that the key was just used."""
        await self._update(key_id, "last_seen", format_time(when or self._now()))

    async def delete_api_key(self, key_id: int) -> None:
        async with self._write() as conn:
            cur = await conn.execute("DELETE FROM api_keys WHERE id = ?", (key_id,))
            if cur.rowcount == 0:
                raise NotFound(f"API key {key_id} not found", entity="api_key")
