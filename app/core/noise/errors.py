"""Errors of the TS2021 Noise layer.

Every error here is fatal for its connection: the adapter closes the socket (after sending
``HandshakeError.error_frame()`` when a handshake is refused). Each class carries what went
wrong as attributes, plus a stable ``reason`` code for logs and metrics.
"""

from __future__ import annotations


class NoiseError(Exception):
    """Base of all TS2021 transport errors."""

    reason = "noise"


class HandshakeError(NoiseError):
    """The handshake cannot complete.

    ``message`` never echoes peer-controlled bytes, so the server may send it back in an
    Error message (type 0x03) as Tailscale's server does.
    """

    reason = "handshake"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def error_frame(self) -> bytes:
        """The Error message (type 0x03) telling the client why it was refused."""
        from .messages import encode_error  # messages imports this module

        return encode_error(self.message)


class ServerRefusedError(HandshakeError):
    """Client side: the server answered the initiation with an Error message.

    ``message`` is the server's (unauthenticated) text.
    """

    reason = "server_refused"


class RecordTypeError(NoiseError):
    """A transport frame whose type byte is not 0x04."""

    reason = "record_type"

    def __init__(self, record_type: int, expected: int = 0x04) -> None:
        super().__init__(f"received frame of type {record_type:#04x}, want {expected:#04x}")
        self.record_type = record_type
        self.expected = expected


class FrameTooLargeError(NoiseError):
    """A transport frame whose header announces more than the 4096-byte maximum."""

    reason = "frame_too_large"

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"frame of {size} bytes exceeds the {limit}-byte limit")
        self.size = size
        self.limit = limit


class DecryptError(NoiseError):
    """A transport record failed authentication; the stream is desynchronised."""

    reason = "decrypt"

    def __init__(self, counter: int) -> None:
        super().__init__(f"record {counter} failed authentication")
        self.counter = counter


class NonceExhausted(NoiseError):
    """The 64-bit record counter of one direction reached 2**64-1."""

    reason = "nonce_exhausted"

    def __init__(self, direction: str) -> None:
        super().__init__(f"{direction} cipher exhausted: no nonces left for this key")
        self.direction = direction


class TransportClosed(NoiseError):
    """A direction of the transport was used after a fatal error poisoned it."""

    reason = "closed"

    def __init__(self, cause: NoiseError) -> None:
        super().__init__(f"transport unusable after earlier error: {cause}")
        self.cause = cause


class EarlyPayloadError(NoiseError):
    """Malformed early payload (the 'EarlyNoise' block before HTTP/2)."""

    reason = "early_payload"
