"""A byte stream carried in binary WebSocket messages (RFC 6455), on top of wsproto.

Used by ``GET /ts2021`` with ``Upgrade: websocket`` (app/server/ts2021_ws.py): message
boundaries mean nothing, the bytes simply flow inside binary messages, as Tailscale's
``wsconn.NetConn`` does on both ends. Anything else the peer sends (a text message, a frame that
breaks RFC 6455) ends the stream with a Close frame carrying the reason, and one log line.

``WSReader`` and ``WSWriter`` look like asyncio's StreamReader/StreamWriter (the few methods the
stream handlers use), so a handler written for a raw socket runs unchanged inside a WebSocket.
"""

from __future__ import annotations

import asyncio
import logging

from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    Request,
    TextMessage,
)
from wsproto.utilities import RemoteProtocolError

from app.server.edge import RequestHead

log = logging.getLogger("headscale.websocket")

READ_SIZE = 1 << 16
PROTOCOL_ERROR = 1002
UNSUPPORTED_DATA = 1003


def parse_upgrade(head: RequestHead) -> tuple[WSConnection, Request] | None:
    """Feed the request head the edge already read into a server-side wsproto connection.

    Returns None when the head is not a valid WebSocket opening handshake."""
    target = head.path + ("?" + head.query if head.query else "")
    lines = [f"{head.method} {target} HTTP/1.1"]
    if "host" not in head.headers:
        lines.append("host: control")
    lines += [f"{name}: {value}" for name, value in head.headers.items()]
    ws = WSConnection(ConnectionType.SERVER)
    try:
        ws.receive_data(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        request = next((e for e in ws.events() if isinstance(e, Request)), None)
    except RemoteProtocolError:
        return None
    return (ws, request) if request is not None else None


class WSReader:
    """``read(n)``: the payload of the next binary message(s); b"" once the WebSocket is closed."""

    def __init__(self, reader: asyncio.StreamReader, ws: WSConnection, writer: asyncio.StreamWriter,
                 who: str = "") -> None:
        self.reader = reader
        self.ws = ws
        self.writer = writer
        self.who = who
        self.close_reason = ""
        self._buf = bytearray()

    def at_eof(self) -> bool:
        return not self._buf and self.ws.state is not ConnectionState.OPEN

    async def read(self, n: int = -1) -> bytes:
        while not self._buf:
            if self.ws.state is not ConnectionState.OPEN:
                return b""
            if not await self._fill():
                return b""
        size = len(self._buf) if n < 0 else min(n, len(self._buf))
        out = bytes(self._buf[:size])
        del self._buf[:size]
        return out

    async def _fill(self) -> bool:
        ws = self.ws
        data = await self.reader.read(READ_SIZE)
        if not data:
            return False
        try:
            ws.receive_data(data)
        except RemoteProtocolError as exc:  # bytes after a close: nothing more to read
            self.fail(PROTOCOL_ERROR, str(exc))
            return False
        for event in ws.events():
            if isinstance(event, BytesMessage):
                self._buf += event.data
            elif isinstance(event, Ping):
                self.writer.write(ws.send(event.response()))
            elif isinstance(event, TextMessage):
                self.fail(UNSUPPORTED_DATA, "text message on a binary-only WebSocket")
                return False
            elif isinstance(event, CloseConnection):
                if ws.state is ConnectionState.REMOTE_CLOSING:
                    self.writer.write(ws.send(event.response()))   # the peer closed: answer it
                    self.close_reason = "closed by the client"
                else:  # wsproto reports a broken frame as a close it did not receive
                    self.fail(event.code, event.reason or "WebSocket protocol error")
                return False
        return True

    def fail(self, code: int, reason: str) -> None:
        """Send a Close frame with the reason (once) and log why."""
        self.close_reason = reason
        log.info("closing WebSocket of %s: %s (close code %d)", self.who or "a client", reason, code)
        if self.ws.state is ConnectionState.OPEN:
            self.writer.write(self.ws.send(CloseConnection(code=code, reason=reason[:120])))


class WSWriter:
    """Writes bytes as binary messages on the underlying socket writer."""

    def __init__(self, writer: asyncio.StreamWriter, ws: WSConnection) -> None:
        self.writer = writer
        self.ws = ws

    @property
    def transport(self) -> asyncio.BaseTransport:
        return self.writer.transport

    def accept(self, subprotocol: str) -> None:
        self.writer.write(self.ws.send(AcceptConnection(subprotocol=subprotocol)))

    def write(self, data: bytes) -> None:
        if data and self.ws.state is ConnectionState.OPEN:
            self.writer.write(self.ws.send(Message(data=data)))

    async def drain(self) -> None:
        await self.writer.drain()

    def get_extra_info(self, name: str, default=None):
        return self.writer.get_extra_info(name, default)

    def is_closing(self) -> bool:
        return self.writer.is_closing()

    def close(self) -> None:
        if self.ws.state is ConnectionState.OPEN and not self.writer.is_closing():
            self.writer.write(self.ws.send(CloseConnection(code=1000)))
        self.writer.close()
