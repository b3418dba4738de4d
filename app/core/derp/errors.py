"""Errors of the DERP relay protocol.

Every error here ends the one connection that caused it: the relay catches it at
``Relay.receive_data`` and turns it into a ``Close`` action (no error frame exists in DERP).
Each class carries what went wrong as attributes plus a stable ``reason`` code for logs and
metrics. Other connections are never affected.
"""

from __future__ import annotations


class DerpError(Exception):
    """Base of all DERP protocol errors."""

    reason = "derp"


class FrameError(DerpError):
    """A frame the protocol does not allow here (bad size, wrong type, missing permission)."""

    reason = "bad_frame"

    def __init__(self, frame_type: int, message: str) -> None:
        super().__init__(f"frame {frame_type:#04x}: {message}")
        self.frame_type = frame_type
        self.message = message


class FrameTooLarge(FrameError):
    """A frame header announcing more bytes than allowed for its type.

    Raised as soon as the 5-byte header is seen, before any payload is buffered.
    """

    reason = "frame_too_large"

    def __init__(self, frame_type: int, length: int, limit: int) -> None:
        super().__init__(frame_type, f"length {length} exceeds the limit of {limit}")
        self.length = length
        self.limit = limit


class NotPermitted(FrameError):
    """A mesh-only frame (WatchConns, ClosePeer, ForwardPacket) from a client without the mesh key."""

    reason = "not_permitted"

    def __init__(self, frame_type: int) -> None:
        super().__init__(frame_type, "requires the mesh key")


class HandshakeError(DerpError):
    """The login (ServerKey / ClientInfo / ServerInfo) cannot complete.

    ``message`` never echoes peer-controlled bytes.
    """

    reason = "handshake"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ClientRefused(DerpError):
    """The verify hook (verify_clients) did not admit this node key."""

    reason = "refused"
