"""Early payload ("EarlyNoise", PROTOCOL.md 2.7): optional server block before HTTP/2.

Plaintext layout, first bytes the server sends inside the transport::

    5B  magic FF FF FF 54 53 ("\\xff\\xff\\xffTS"; never the start of an HTTP/2 frame)
    4B  n, u32 big-endian (clients refuse more than 10 MiB)
    nB  JSON {"nodeKeyChallenge":"chalpub:<64 hex>"}

The 9-byte header is as long as an HTTP/2 frame header: a client peeks 9 bytes and, without
the magic, treats them as the start of the server's SETTINGS frame.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .. import jsonsafe
from ..keys import CHALLENGE_PUBLIC, KeyError_, format_key, parse_key
from .errors import EarlyPayloadError

EARLY_PAYLOAD_MAGIC = b"\xff\xff\xffTS"
EARLY_HEADER_LEN = len(EARLY_PAYLOAD_MAGIC) + 4
MAX_EARLY_PAYLOAD = 10 << 20


@dataclass(frozen=True, slots=True)
class EarlyNoise:
    node_key_challenge: bytes | None  # raw 32-byte challenge public key, None if absent


def early_payload(challenge_public: bytes) -> bytes:
    """The plaintext to encrypt right after the handshake response."""
    body = json.dumps(
        {"nodeKeyChallenge": format_key(challenge_public, CHALLENGE_PUBLIC)}, separators=(",", ":")
    ).encode()
    return EARLY_PAYLOAD_MAGIC + len(body).to_bytes(4, "big") + body


def split_early_payload(stream: bytes) -> tuple[EarlyNoise | None, bytes] | None:
    """Client side: look at the first plaintext bytes from the server.

    Returns None while more bytes are needed to decide, ``(None, stream)`` when the stream
    does not start with an early payload (it is HTTP/2 from the first byte), else
    ``(EarlyNoise, bytes after it)``.
    """
    if len(stream) < EARLY_HEADER_LEN:
        # Decide early only when the bytes seen so far already rule the magic out.
        if not EARLY_PAYLOAD_MAGIC.startswith(bytes(stream[: len(EARLY_PAYLOAD_MAGIC)])):
            return None, stream
        return None
    if stream[: len(EARLY_PAYLOAD_MAGIC)] != EARLY_PAYLOAD_MAGIC:
        return None, stream
    n = int.from_bytes(stream[len(EARLY_PAYLOAD_MAGIC):EARLY_HEADER_LEN], "big")
    if n > MAX_EARLY_PAYLOAD:
        raise EarlyPayloadError(f"early payload of {n} bytes exceeds {MAX_EARLY_PAYLOAD}")
    end = EARLY_HEADER_LEN + n
    if len(stream) < end:
        return None
    return _decode(bytes(stream[EARLY_HEADER_LEN:end])), stream[end:]


def _decode(body: bytes) -> EarlyNoise:
    try:
        doc = jsonsafe.loads(body)   # a JSONError is a ValueError
    except ValueError as exc:
        raise EarlyPayloadError(f"early payload is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise EarlyPayloadError("early payload is not a JSON object")
    # Go's decoder matches field names case-insensitively and ignores unknown fields.
    value = next((v for k, v in doc.items() if k.lower() == "nodekeychallenge"), None)
    if value is None:
        return EarlyNoise(node_key_challenge=None)
    try:
        return EarlyNoise(node_key_challenge=parse_key(value, CHALLENGE_PUBLIC))
    except KeyError_ as exc:
        raise EarlyPayloadError(f"bad nodeKeyChallenge: {exc}") from None
