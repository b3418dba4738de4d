"""Curve25519 key text forms used on the wire (PROTOCOL.md 1.1).

Text form = type prefix + 64 lowercase hex characters. Parsing accepts upper case; a wrong
prefix or length is an error. Keys travel through the code as their text form (``str``),
which is also how headscale stores them in the database.
"""

from __future__ import annotations

import os

MACHINE_PUBLIC = "mkey:"
NODE_PUBLIC = "nodekey:"
DISCO_PUBLIC = "discokey:"
PRIVATE = "privkey:"
CHALLENGE_PUBLIC = "chalpub:"

ZERO_HEX = "0" * 64


class KeyError_(ValueError):
    """A key string that is not of the expected form."""


def parse_key(text: str, prefix: str) -> bytes:
    """Return the 32 raw bytes of ``prefix + 64 hex``; raise KeyError_ otherwise."""
    if not isinstance(text, str) or not text.startswith(prefix):
        raise KeyError_(f"key must start with {prefix!r}")
    body = text[len(prefix):]
    if len(body) != 64:
        raise KeyError_(f"{prefix} key must have 64 hex characters")
    try:
        return bytes.fromhex(body)
    except ValueError:
        raise KeyError_(f"{prefix} key is not hex") from None


def format_key(raw: bytes, prefix: str) -> str:
    if len(raw) != 32:
        raise KeyError_("a key has 32 bytes")
    return prefix + raw.hex()


def normalise(text: str, prefix: str) -> str:
    """Canonical (lower-case) text form of a key string."""
    return format_key(parse_key(text, prefix), prefix)


def is_zero(text: str | None) -> bool:
    return not text or text.endswith(ZERO_HEX)


def clamp(raw: bytes) -> bytes:
    """X25519 scalar clamping, as Tailscale does for its private keys."""
    b = bytearray(raw)
    b[0] &= 248
    b[31] = (b[31] & 127) | 64
    return bytes(b)


def new_private() -> bytes:
    return clamp(os.urandom(32))


def short(text: str) -> str:
    """A loggable short form of a public key: never log private keys at all."""
    if ":" in text:
        prefix, body = text.split(":", 1)
        return f"{prefix}:{body[:8]}"
    return text[:8]
