"""A small asyncio DERP client built on app.core.derp, for tests and the bench.

Usage::

    client = await DerpClient.connect("127.0.0.1", port)          # HTTP upgrade + login
    await client.send(peer_key, b"hello")
    src, data = await client.recv_packet()

It speaks plain ``Upgrade: DERP`` or WebSocket (subprotocol ``derp``), answers server pings,
and turns frames into small message objects. It is deliberately strict: anything unexpected
during login raises, so tests notice.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl as ssl_
from collections import deque
from dataclasses import dataclass

from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, BytesMessage, CloseConnection, Message, RejectConnection, Request
from wsproto.events import Ping as WsPing

from app.core.derp import frames
from app.core.derp.frames import ClientInfo, FrameParser, FrameType, ServerInfo
from app.core.keys import NODE_PUBLIC, new_private


class DerpClosed(ConnectionError):
    """The server closed the connection (for example: verify refused us)."""


@dataclass(frozen=True)
class Packet:
    src: bytes
    data: bytes


@dataclass(frozen=True)
class PeerGone:
    peer: bytes
    reason: int


@dataclass(frozen=True)
class PeerPresent:
    peer: bytes
    ip: str | None
    port: int
    flags: int


@dataclass(frozen=True)
class KeepAlive:
    pass


@dataclass(frozen=True)
class Pong:
    data: bytes


@dataclass(frozen=True)
class Ping:
    data: bytes  # already answered


@dataclass(frozen=True)
class Health:
    problem: str


@dataclass(frozen=True)
class Restarting:
    reconnect_in_ms: int
    try_for_ms: int


@dataclass(frozen=True)
class Unknown:
    type: int
    payload: bytes


class DerpClient:
    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        private_key: bytes | None = None,
        *,
        ws: WSConnection | None = None,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.private_key = private_key or new_private()
        self.public_key = frames.public_key_of(self.private_key)
        self.server_public: bytes | None = None
        self.server_info: ServerInfo | None = None
        self._ws = ws
        self._parser = FrameParser()
        self._frames: deque = deque()
        self._closed = False

    @property
    def node_key(self) -> str:
        return NODE_PUBLIC + self.public_key.hex()

    # --- connecting ---------------------------------------------------------------------

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        private_key: bytes | None = None,
        *,
        websocket: bool = False,
        fast_start: bool = False,
        server_public: bytes | None = None,
        info: ClientInfo | None = None,
        headers: dict[str, str] | None = None,
        path: str = "/derp",
        timeout: float = 5.0,
        sock: socket.socket | None = None,
        ssl: ssl_.SSLContext | None = None,
    ) -> DerpClient:
        """Dial (or use the connected ``sock``; TLS with ``ssl``), upgrade and log in.

        ``fast_start`` needs ``server_public``.
        """
        if sock is not None:
            reader, writer = await asyncio.open_connection(
                sock=sock, ssl=ssl, server_hostname=host if ssl else None
            )
        else:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, ssl=ssl), timeout)
        return await cls.over_http(
            reader,
            writer,
            private_key,
            host=f"{host}:{port}",
            websocket=websocket,
            fast_start=fast_start,
            server_public=server_public,
            info=info,
            headers=headers,
            path=path,
            timeout=timeout,
        )

    @classmethod
    async def over_http(
        cls,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        private_key: bytes | None = None,
        *,
        host: str = "derp",
        websocket: bool = False,
        fast_start: bool = False,
        server_public: bytes | None = None,
        info: ClientInfo | None = None,
        headers: dict[str, str] | None = None,
        path: str = "/derp",
        timeout: float = 5.0,
    ) -> DerpClient:
        """Send ``GET /derp`` with the upgrade on an open connection, then log in."""
        try:
            client = await asyncio.wait_for(
                cls._upgrade(reader, writer, private_key, host, path, websocket, fast_start, headers), timeout
            )
            await asyncio.wait_for(
                client.login(info, server_public=server_public if fast_start else None), timeout
            )
        except BaseException:
            writer.transport.abort()
            raise
        return client

    @classmethod
    async def over(
        cls,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        private_key: bytes | None = None,
        *,
        info: ClientInfo | None = None,
        timeout: float = 5.0,
    ) -> DerpClient:
        """Log in over an already upgraded stream."""
        client = cls(reader, writer, private_key)
        await asyncio.wait_for(client.login(info), timeout)
        return client

    @classmethod
    async def _upgrade(
        cls, reader, writer, private_key, host, path, websocket, fast_start, headers
    ) -> DerpClient:
        extra = dict(headers or {})
        if fast_start:
            extra["Derp-Fast-Start"] = "1"
        if websocket:
            ws = WSConnection(ConnectionType.CLIENT)
            writer.write(
                ws.send(
                    Request(host=host, target=path, subprotocols=["derp"], extra_headers=list(extra.items()))
                )
            )
            while True:
                data = await reader.read(4096)
                if not data:
                    raise DerpClosed("closed during the WebSocket handshake")
                ws.receive_data(data)
                for event in ws.events():
                    if isinstance(event, AcceptConnection):
                        return cls(reader, writer, private_key, ws=ws)
                    if isinstance(event, RejectConnection):
                        raise DerpClosed(f"WebSocket upgrade rejected: {event.status_code}")
        lines = [f"GET {path} HTTP/1.1", f"Host: {host}", "Upgrade: DERP", "Connection: Upgrade"]
        lines += [f"{k}: {v}" for k, v in extra.items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        if not fast_start:
            head = await reader.readuntil(b"\r\n\r\n")
            status = head.split(b"\r\n", 1)[0]
            if b" 101 " not in status + b" ":
                raise DerpClosed(f"upgrade refused: {status.decode(errors='replace')}")
        return cls(reader, writer, private_key)

    async def login(self, info: ClientInfo | None = None, *, server_public: bytes | None = None) -> None:
        """ServerKey -> ClientInfo -> ServerInfo. With ``server_public`` (fast start) do not wait for ServerKey."""
        if server_public is None:
            frame = await self._next_frame()
            if frame.type is not FrameType.SERVER_KEY:
                raise DerpClosed(f"expected ServerKey, got {frame.type!r}")
            server_public = frames.parse_server_key(frame.payload)
        self.server_public = server_public
        self._write(frames.client_info(self.private_key, server_public, info))
        while True:
            frame = await self._next_frame()
            if frame.type is FrameType.SERVER_INFO:
                self.server_info = frames.open_server_info(self.private_key, server_public, frame.payload)
                return
            if frame.type is not FrameType.SERVER_KEY:  # fast start: the greeting arrives anyway
                raise DerpClosed(f"expected ServerInfo, got {frame.type!r}")

    # --- sending ------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if self._ws is not None:
            data = self._ws.send(Message(data=data))
        self.writer.write(data)

    def send_nowait(self, dst: bytes, packet: bytes) -> None:
        self._write(frames.send_packet(dst, packet))

    def send_many_nowait(self, dst: bytes, packets: list[bytes]) -> None:
        """Several packets in one write (one syscall instead of one per packet)."""
        self._write(b"".join([frames.send_packet(dst, p) for p in packets]))

    async def send(self, dst: bytes, packet: bytes) -> None:
        self.send_nowait(dst, packet)
        await self.writer.drain()

    async def send_raw(self, data: bytes) -> None:
        """Arbitrary bytes (tests of malformed input)."""
        self._write(data)
        await self.writer.drain()

    async def note_preferred(self, preferred: bool = True) -> None:
        await self.send_raw(frames.note_preferred(preferred))

    async def watch_conns(self) -> None:
        await self.send_raw(frames.WATCH_CONNS_FRAME)

    async def close_peer(self, key: bytes) -> None:
        await self.send_raw(frames.close_peer(key))

    async def forward(self, src: bytes, dst: bytes, packet: bytes) -> None:
        await self.send_raw(frames.forward_packet(src, dst, packet))

    async def ping(self, data: bytes | None = None, timeout: float = 5.0) -> float:
        """Ping the server; return the round-trip time. Other messages stay queued for recv()."""
        data = data or os.urandom(8)
        loop = asyncio.get_running_loop()
        start = loop.time()
        await self.send_raw(frames.ping(data))
        deadline = start + timeout
        kept: list = []
        try:
            while True:
                frame = await asyncio.wait_for(self._next_frame(), max(0.0, deadline - loop.time()))
                if frame.type is FrameType.PONG and frame.payload == data:
                    return loop.time() - start
                kept.append(frame)
        finally:
            self._frames.extendleft(reversed(kept))

    # --- receiving ----------------------------------------------------------------------

    async def recv(self, timeout: float | None = 5.0):
        """The next message (Packet, PeerGone, PeerPresent, KeepAlive, Pong, Ping, Health, ...)."""
        frame = await asyncio.wait_for(self._next_frame(), timeout)
        return self._decode(frame)

    async def recv_packet(self, timeout: float | None = 5.0) -> tuple[bytes, bytes]:
        """The next relayed packet as (source key, data), skipping other messages."""
        async with asyncio.timeout(timeout):
            while True:
                frame = await self._next_frame()
                if frame.type is FrameType.RECV_PACKET:
                    return frames.parse_recv_packet(frame.payload)

    async def recv_packets(self, count: int, timeout: float | None = 5.0) -> list[bytes]:
        """Data of the next ``count`` packets (fast path for the bench)."""
        out: list[bytes] = []
        async with asyncio.timeout(timeout):
            while len(out) < count:
                frame = await self._next_frame()
                if frame.type is FrameType.RECV_PACKET:
                    out.append(frame.payload[frames.KEY_LEN :])
        return out

    async def recv_frames(self, timeout: float | None = 5.0) -> list:
        """Every frame already parsed, or those of the next read (no per-frame awaits: for the bench)."""
        if not self._frames:
            async with asyncio.timeout(timeout):
                await self._fill()
        frames_, self._frames = list(self._frames), deque()
        return frames_

    async def expect_closed(self, timeout: float = 5.0) -> None:
        """Wait until the server closes the connection (frames received meanwhile are dropped)."""
        async with asyncio.timeout(timeout):
            while True:
                try:
                    await self._next_frame()
                except (DerpClosed, ConnectionError):
                    return

    def _decode(self, frame):
        t, p = frame.type, frame.payload
        if t is FrameType.RECV_PACKET:
            return Packet(*frames.parse_recv_packet(p))
        if t is FrameType.PEER_GONE:
            return PeerGone(*frames.parse_peer_gone(p))
        if t is FrameType.PEER_PRESENT:
            return PeerPresent(*frames.parse_peer_present(p))
        if t is FrameType.KEEP_ALIVE:
            return KeepAlive()
        if t is FrameType.PONG:
            return Pong(p[:8])
        if t is FrameType.PING:
            return Ping(p[:8])
        if t is FrameType.HEALTH:
            return Health(p.decode(errors="replace"))
        if t is FrameType.RESTARTING:
            return Restarting(*frames.parse_restarting(p))
        return Unknown(int(t), p)

    async def _next_frame(self):
        while not self._frames:
            await self._fill()
        return self._frames.popleft()

    async def _fill(self) -> None:
        data = await self._read()
        for frame in self._parser.receive_data(data):
            if frame.type is FrameType.PING:
                self._write(frames.pong(frame.payload[:8]))  # as Tailscale clients do
            self._frames.append(frame)

    async def _read(self) -> bytes:
        while True:
            if self._ws is not None:
                chunks = self._ws_chunks()  # the handshake read may have carried frames already
                if chunks:
                    return chunks
            if self._closed:
                raise DerpClosed("connection closed")
            data = await self.reader.read(1 << 16)
            if not data:
                self._closed = True
                raise DerpClosed("server closed the connection")
            if self._ws is None:
                return data
            self._ws.receive_data(data)

    def _ws_chunks(self) -> bytes:
        chunks = []
        for event in self._ws.events():
            if isinstance(event, BytesMessage):
                chunks.append(bytes(event.data))
            elif isinstance(event, WsPing):
                self.writer.write(self._ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                self._closed = True
        return b"".join(chunks)

    async def close(self) -> None:
        self._closed = True
        self.writer.close()
        try:
            await asyncio.wait_for(self.writer.wait_closed(), 2)
        except (TimeoutError, ConnectionError, OSError):
            pass

    def abort(self) -> None:
        self._closed = True
        self.writer.transport.abort()


async def read_request_head(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str]]:
    """Minimal HTTP/1.1 head reader standing in for the edge listener in tests and the bench."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    return method, path, headers


async def serve_derp(
    server, host: str = "127.0.0.1", port: int = 0, ssl: ssl_.SSLContext | None = None
) -> asyncio.Server:
    """A tiny listener that reads the request head and calls ``server.handle`` (a DerpServer)."""

    async def on_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            method, path, headers = await read_request_head(reader)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, ConnectionError):
            writer.transport.abort()
            return
        try:
            await server.handle(reader, writer, method, path, headers)
        except asyncio.CancelledError:
            pass  # loop shutdown; Python 3.11's start_server would log the cancelled task

    return await asyncio.start_server(on_conn, host, port, ssl=ssl)
