"""Key material for pre-auth and API keys, compatible with headscale 0.28+.

Full key: ``hskey-<kind>-<prefix>-<secret>`` where prefix is 12 and secret 64 characters of
unpadded URL-safe base64 (``A-Z a-z 0-9 - _``; so either may contain ``-``: split by length,
not by separator). The database keeps the prefix (indexed, unique) and
``bcrypt(secret)`` at cost 10 (Go's ``bcrypt.DefaultCost``), in the ``$2a$`` form Go writes.
bcrypt is deliberately slow (~50-100 ms): callers run it in a worker thread.
"""

from __future__ import annotations

import asyncio
import base64
import re
import secrets

import bcrypt

PREFIX_LENGTH = 12
SECRET_LENGTH = 64
BCRYPT_COST = 10
_URLSAFE = re.compile(r"^[A-Za-z0-9_-]*$")


def random_urlsafe(length: int) -> str:
    """``length`` characters of URL-safe base64 over ``length`` random bytes (headscale's way)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(length)).decode().rstrip("=")[:length]


def is_urlsafe(text: str) -> bool:
    return bool(_URLSAFE.match(text))


def hash_secret(secret: str) -> bytes:
    return bcrypt.hashpw(secret.encode(), bcrypt.gensalt(rounds=BCRYPT_COST, prefix=b"2a"))


def check_secret(hashed: bytes | str | None, secret: str) -> bool:
    if not hashed:
        return False
    if isinstance(hashed, str):
        hashed = hashed.encode()
    try:
        return bcrypt.checkpw(secret.encode(), bytes(hashed))
    except ValueError:  # malformed hash, or a secret longer than bcrypt's 72 bytes
        return False


async def hash_secret_async(secret: str) -> bytes:
    return await asyncio.to_thread(hash_secret, secret)


async def check_secret_async(hashed: bytes | str | None, secret: str) -> bool:
    return await asyncio.to_thread(check_secret, hashed, secret)


def split_new_key(full_key: str, kind_prefix: str) -> tuple[str, str] | None:
    """``hskey-auth-<12>-<64>`` → (prefix, secret); None if not of that form. Raises
    ValueError when it starts like one but is malformed."""
    if kind_prefix not in full_key:
        return None
    rest = full_key.split(kind_prefix, 1)[1]
    if len(rest) < PREFIX_LENGTH + 1 + SECRET_LENGTH:
        raise ValueError(f"key too short: expected at least {PREFIX_LENGTH + 1 + SECRET_LENGTH} characters after {kind_prefix}")
    prefix, sep, secret = rest[:PREFIX_LENGTH], rest[PREFIX_LENGTH], rest[PREFIX_LENGTH + 1:]
    if sep != "-":
        raise ValueError(f"expected '-' at position {PREFIX_LENGTH}")
    if len(secret) != SECRET_LENGTH:
        raise ValueError(f"secret must be {SECRET_LENGTH} characters")
    if not is_urlsafe(prefix) or not is_urlsafe(secret):
        raise ValueError("key contains characters outside URL-safe base64")
    return prefix, secret
