"""DERP relay protocol, sans-I/O (PROTOCOL.md 6).

``frames``: wire codec, login boxes and the incremental parser; ``relay``: routing state
(connections, keys, watchers) that turns frames into actions; ``queue``: bounded per-client
output queues. The asyncio adapter is ``app.server.derp_conn``.
"""

from .errors import ClientRefused, DerpError, FrameError, FrameTooLarge, HandshakeError, NotPermitted
from .frames import ClientInfo, Frame, FrameParser, FrameType, PeerGoneReason, PeerPresentFlags, ServerInfo
from .queue import SendQueue
from .relay import Action, Close, ConnState, Relay, RelayStats, Send, Verify

__all__ = [
    "Action",
    "ClientInfo",
    "ClientRefused",
    "Close",
    "ConnState",
    "DerpError",
    "Frame",
    "FrameError",
    "FrameParser",
    "FrameTooLarge",
    "FrameType",
    "HandshakeError",
    "NotPermitted",
    "PeerGoneReason",
    "PeerPresentFlags",
    "Relay",
    "RelayStats",
    "Send",
    "SendQueue",
    "ServerInfo",
    "Verify",
]
