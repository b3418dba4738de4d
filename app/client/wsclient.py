"""Client side of a byte stream in binary WebSocket messages (as Tailscale's JS/WASM client dials
``/ts2021``): ``open_websocket`` returns a reader and a writer shaped like asyncio's streams."""

from __future__ import annotations

import asyncio
import ssl

from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    RejectConnection,
    RejectData,
    Request,
)


class WSClientReader:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ws: WSConnection) -> None:
        self.reader = reader
        self.writer = writer
        self.ws = ws
        self.buf = bytearray()
        self.close_code: int | None = None
        self.close_reason = ""

    def _take(self, events) -> None:
        for ev in events:
            if isinstance(ev, BytesMessage):
                self.buf += ev.data
            elif isinstance(ev, Ping):
                self.writer.write(self.ws.send(ev.response()))
            elif isinstance(ev, CloseConnection):
                self.close_code, self.close_reason = ev.code, ev.reason or ""
                if self.ws.state is ConnectionState.REMOTE_CLOSING:
                    self.writer.write(self.ws.send(ev.response()))

    async def _fill(self) -> bool:
        if self.close_code is not None:
            return False
        data = await self.reader.read(65536)
        if not data:
            return False
        self.ws.receive_data(data)
        self._take(self.ws.events())
        return True

    async def read(self, n: int = -1) -> bytes:
        while not self.buf:
            if not await self._fill():
                return b""
        size = len(self.buf) if n < 0 else min(n, len(self.buf))
        out = bytes(self.buf[:size])
        del self.buf[:size]
        return out

    async def readexactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not await self._fill():
                raise asyncio.IncompleteReadError(bytes(self.buf), n)
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out


class WSClientWriter:
    def __init__(self, writer: asyncio.StreamWriter, ws: WSConnection) -> None:
        self.writer = writer
        self.ws = ws

    def write(self, data: bytes) -> None:
        if data and self.ws.state is ConnectionState.OPEN:
            self.writer.write(self.ws.send(Message(data=data)))

    def write_raw(self, data: bytes) -> None:
        """Bytes straight on the socket (tests use it to send broken frames)."""
        self.writer.write(data)

    async def drain(self) -> None:
        await self.writer.drain()

    def close(self) -> None:
        if self.ws.state is ConnectionState.OPEN and not self.writer.is_closing():
            self.writer.write(self.ws.send(CloseConnection(code=1000)))
        self.writer.close()


async def open_websocket(host: str, port: int, target: str, subprotocol: str,
                         tls: ssl.SSLContext | None = None,
                         server_name: str | None = None,
                         extra_headers: list[tuple[str, str]] | None = None) -> tuple[WSClientReader, WSClientWriter]:
    reader, writer = await asyncio.open_connection(host, port, ssl=tls,
                                                   server_hostname=(server_name or host) if tls else None)
    ws = WSConnection(ConnectionType.CLIENT)
    headers = [(k.encode(), v.encode()) for k, v in extra_headers or []]
    writer.write(ws.send(Request(host=f"{host}:{port}", target=target, subprotocols=[subprotocol],
                                 extra_headers=headers)))
    await writer.drain()
    r = WSClientReader(reader, writer, ws)
    while True:
        data = await reader.read(65536)
        if not data:
            writer.close()
            raise ConnectionError("WebSocket upgrade: connection closed")
        ws.receive_data(data)
        events = list(ws.events())
        for i, ev in enumerate(events):
            if isinstance(ev, AcceptConnection):
                if ev.subprotocol != subprotocol:
                    writer.close()
                    raise ConnectionError(f"WebSocket upgrade: subprotocol {ev.subprotocol!r}")
                r._take(events[i + 1:])
                return r, WSClientWriter(writer, ws)
            if isinstance(ev, (RejectConnection, RejectData)):
                writer.close()
                status = getattr(ev, "status_code", 0)
                raise ConnectionError(f"upgrade refused: HTTP {status}")
