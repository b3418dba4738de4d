"""TS2021 wire messages (PROTOCOL.md 2.4). All integers are big-endian.

Initiation, client -> server (101 bytes; base64 in ``X-Tailscale-Handshake``)::

    2B  protocol version (the client's capability version, e.g. 130)
    1B  message type 0x01
    2B  payload length = 96
    32B client ephemeral public key (clear)
    48B client machine public key, encrypted (32B + 16B tag)
    16B tag of the empty payload

Response, server -> client (51 bytes, raw right after the HTTP 101)::

    1B  message type 0x02
    2B  payload length = 48
    32B server ephemeral public key (clear)
    16B tag of the empty payload

Error, server -> client instead of a Response (3+n bytes)::

    1B  message type 0x03
    2B  n
    nB  UTF-8 text, unauthenticated

Transport record, both directions (3+n bytes, at most 4096)::

    1B  message type 0x04
    2B  n = len(plaintext) + 16
    nB  ChaCha20-Poly1305 ciphertext + tag
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import HandshakeError

MSG_INITIATION = 0x01
MSG_RESPONSE = 0x02
MSG_ERROR = 0x03
MSG_RECORD = 0x04

HEADER_LEN = 3  # type + length; the initiation has 2 more bytes of version in front
KEY_LEN = 32
TAG_LEN = 16

INITIATION_PAYLOAD_LEN = KEY_LEN + (KEY_LEN + TAG_LEN) + TAG_LEN  # 96
INITIATION_LEN = 2 + HEADER_LEN + INITIATION_PAYLOAD_LEN  # 101
RESPONSE_PAYLOAD_LEN = KEY_LEN + TAG_LEN  # 48
RESPONSE_LEN = HEADER_LEN + RESPONSE_PAYLOAD_LEN  # 51

# Limits chain: frame on the wire -> ciphertext after the header -> plaintext after the tag.
MAX_FRAME_LEN = 4096
MAX_CIPHERTEXT_LEN = MAX_FRAME_LEN - HEADER_LEN  # 4093
MAX_PLAINTEXT_LEN = MAX_CIPHERTEXT_LEN - TAG_LEN  # 4077

MAX_ERROR_TEXT = 0xFFFF  # what the u16 length can say


@dataclass(frozen=True, slots=True)
class Initiation:
    version: int
    ephemeral_public: bytes  # 32
    machine_key_ciphertext: bytes  # 48
    tag: bytes  # 16

    def encode(self) -> bytes:
        return b"".join((
            self.version.to_bytes(2, "big"),
            bytes((MSG_INITIATION,)),
            INITIATION_PAYLOAD_LEN.to_bytes(2, "big"),
            self.ephemeral_public,
            self.machine_key_ciphertext,
            self.tag,
        ))

    @classmethod
    def decode(cls, data: bytes) -> Initiation:
        """Parse and validate the 101 bytes; the texts are those Tailscale's server sends."""
        if len(data) != INITIATION_LEN:
            raise HandshakeError("wrong handshake initiation size")
        if data[2] != MSG_INITIATION:
            raise HandshakeError("unexpected handshake message type")
        if int.from_bytes(data[3:5], "big") != INITIATION_PAYLOAD_LEN:
            raise HandshakeError("wrong handshake initiation length")
        return cls(
            version=int.from_bytes(data[0:2], "big"),
            ephemeral_public=bytes(data[5:37]),
            machine_key_ciphertext=bytes(data[37:85]),
            tag=bytes(data[85:101]),
        )


@dataclass(frozen=True, slots=True)
class Response:
    ephemeral_public: bytes  # 32
    tag: bytes  # 16

    def encode(self) -> bytes:
        return b"".join((
            bytes((MSG_RESPONSE,)),
            RESPONSE_PAYLOAD_LEN.to_bytes(2, "big"),
            self.ephemeral_public,
            self.tag,
        ))

    @classmethod
    def decode(cls, data: bytes) -> Response:
        """Parse a Response; an Error message is the caller's business (see reply_size)."""
        if len(data) < HEADER_LEN or data[0] != MSG_RESPONSE:
            raise HandshakeError("unexpected handshake response type")
        if int.from_bytes(data[1:3], "big") != RESPONSE_PAYLOAD_LEN or len(data) != RESPONSE_LEN:
            raise HandshakeError("wrong handshake response length")
        return cls(ephemeral_public=bytes(data[3:35]), tag=bytes(data[35:51]))


def encode_error(text: str) -> bytes:
    """An Error message; text longer than the u16 length allows is cut."""
    body = text.encode("utf-8")[:MAX_ERROR_TEXT]
    return bytes((MSG_ERROR,)) + len(body).to_bytes(2, "big") + body


def decode_error(data: bytes) -> str:
    """The text of a complete Error message (undecodable bytes are replaced)."""
    if len(data) < HEADER_LEN or data[0] != MSG_ERROR:
        raise HandshakeError("not a handshake error message")
    n = int.from_bytes(data[1:3], "big")
    if len(data) != HEADER_LEN + n:
        raise HandshakeError("wrong handshake error message length")
    return bytes(data[HEADER_LEN:]).decode("utf-8", "replace")


def reply_size(header: bytes) -> int:
    """Total size of the server's handshake reply, from its first 3 bytes.

    A client reading from a stream reads 3 bytes, calls this, then reads the rest and hands
    the whole message to ``Initiator.finish``. Bytes after it are transport records.
    """
    if len(header) < HEADER_LEN:
        raise ValueError("need the 3-byte header")
    kind = header[0]
    n = int.from_bytes(header[1:3], "big")
    if kind == MSG_RESPONSE:
        if n != RESPONSE_PAYLOAD_LEN:
            raise HandshakeError("wrong handshake response length")
        return RESPONSE_LEN
    if kind == MSG_ERROR:
        return HEADER_LEN + n
    raise HandshakeError("unexpected handshake response type")
