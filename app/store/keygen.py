"""Key material for pre-auth and API keys, compatible with headscale 0.28+.

Full key: ``hskey-<kind>-<prefix>-<secret>`` where prefix is 12 and secret 64 characters of
unpadded URL-safe base64 (``A-Z a-z 0-9 - _``; so either may contain ``-``: split by length,
not by separator). The database keeps the prefix (indexed, unique) and
``bcrypt(secret)`` at cost 10 (Go's ``bcrypt.DefaultCost``), in the ``$2a$`` form Go writes.
bcrypt is deliberately slow (~50-100 ms): callers run it in a worker thread.

A secret that passed bcrypt once is remembered for the life of the process as an HMAC-SHA256
digest (under a random per-process key) next to the bcrypt hash it matched, so a reusable key
registering thousands of nodes costs one bcrypt, then a constant-time digest comparison per
use. Anything that does not match the remembered digest (a wrong secret) still pays the full
bcrypt check; the cache never holds a secret, and a changed or deleted row changes the hash.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
import secrets

import bcrypt

PREFIX_LENGTH = 12
SECRET_LENGTH = 64
BCRYPT_COST = 10
_URLSAFE = re.compile(r"^[A-Za-z0-9_-]*$")
_VERIFIED_MAX = 4096                       # remembered (hash -> digest) pairs; oldest dropped first
_verified: dict[bytes, bytes] = {}
_digest_key = secrets.token_bytes(32)


def random_urlsafe(length: int) -> str:
    """``length`` characters of URL-safe base64 over ``length`` random bytes (headscale's way)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(length)).decode().rstrip("=")[:length]


def is_urlsafe(text: str) -> bool:
    return bool(_URLSAFE.match(text))


def hash_secret(secret: str) -> bytes:
    return bcrypt.hashpw(secret.encode(), bcrypt.gensalt(rounds=BCRYPT_COST, prefix=b"2a"))


def _digest(secret: str) -> bytes:
    return hmac.new(_digest_key, secret.encode(), hashlib.sha256).digest()


def _known(hashed: bytes, secret: str) -> bool:
    """The secret already passed bcrypt against this very hash (constant-time comparison)."""
    remembered = _verified.get(hashed)
    return remembered is not None and hmac.compare_digest(remembered, _digest(secret))


def _remember(hashed: bytes, secret: str) -> None:
    if len(_verified) >= _VERIFIED_MAX:
        del _verified[next(iter(_verified))]
    _verified[hashed] = _digest(secret)


def _as_bytes(hashed: bytes | str | None) -> bytes | None:
    if not hashed:
        return None
    return hashed.encode() if isinstance(hashed, str) else bytes(hashed)


def _bcrypt_check(hashed: bytes, secret: str) -> bool:
    try:
        ok = bcrypt.checkpw(secret.encode(), hashed)
    except ValueError:  # malformed hash, or a secret longer than bcrypt's 72 bytes
        return False
    if ok:
        _remember(hashed, secret)
    return ok


def check_secret(hashed: bytes | str | None, secret: str) -> bool:
    h = _as_bytes(hashed)
    if h is None:
        return False
    return _known(h, secret) or _bcrypt_check(h, secret)


async def hash_secret_async(secret: str) -> bytes:
    return await asyncio.to_thread(hash_secret, secret)


async def check_secret_async(hashed: bytes | str | None, secret: str) -> bool:
    """bcrypt in a worker thread, unless this secret already passed against this hash."""
    h = _as_bytes(hashed)
    if h is None:
        return False
    if _known(h, secret):
        return True
    return await asyncio.to_thread(_bcrypt_check, h, secret)


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
