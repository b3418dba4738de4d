"""asyncio adapter for the embedded DERP relay: socket <-> app.core.derp.Relay.

The edge listener reads the HTTP/1.1 request head of ``GET /derp`` and hands the socket to
``DerpServer.handle``. From there this module only moves bytes: it answers the upgrade
(plain ``Upgrade: DERP`` or WebSocket with subprotocol ``derp``), feeds what it reads into the
relay, performs the relay's actions (queue frames, close connections, ask the verify hook),
and runs one writer task, one keepalive timer and the login deadline per connection. Every
protocol decision lives in ``app.core.derp``.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

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

from app.core.derp import frames
from app.core.derp.queue import DEFAULT_MAX_BYTES, DEFAULT_MAX_FRAMES, SendQueue
from app.core.derp.relay import Close, ConnState, Relay, Send, Verify
from app.core.keys import NODE_PUBLIC, KeyError_, parse_key
from app.server.clientaddr import peer_address

log = logging.getLogger("derp")

HANDSHAKE_TIMEOUT = 10.0  # ServerKey -> ClientInfo -> verdict, as Tailscale's server
WRITE_TIMEOUT = 2.0  # a client that does not read for this long is dropped (Tailscale: 2 s)
KEEPALIVE_JITTER = 5.0
READ_SIZE = 1 << 16

VerifyHook = Callable[[str], Awaitable[bool]]


class _PlainStream:
    """The DERP byte stream straight on the socket."""

    __slots__ = ("reader", "transport", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.transport = writer.transport

    async def read(self) -> bytes:
        return await self.reader.read(READ_SIZE)

    def write(self, data: bytes) -> None:
        self.writer.write(data)


class _WebSocketStream(_PlainStream):
    """The DERP byte stream carried in binary WebSocket messages (message boundaries mean nothing)."""

    __slots__ = ("ws",)

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ws: WSConnection) -> None:
        super().__init__(reader, writer)
        self.ws = ws

    async def read(self) -> bytes:
        ws = self.ws
        while True:
            data = await self.reader.read(READ_SIZE)
            if not data:
                return b""
            try:
                ws.receive_data(data)
                chunks = []
                for event in ws.events():
                    if isinstance(event, BytesMessage):
                        chunks.append(bytes(event.data))
                    elif isinstance(event, Ping):
                        self.writer.write(ws.send(event.response()))
                    elif isinstance(event, CloseConnection):
                        if ws.state is ConnectionState.REMOTE_CLOSING:
                            self.writer.write(ws.send(event.response()))
                        return b""
                    elif isinstance(event, TextMessage):
                        return b""  # DERP over WebSocket is binary only
            except RemoteProtocolError:
                return b""
            if chunks:
                return b"".join(chunks)

    def write(self, data: bytes) -> None:
        if self.ws.state is ConnectionState.OPEN:
            self.writer.write(self.ws.send(Message(data=data)))


class _Client:
    """Adapter-side state of one connection: its stream, output queue and timers."""

    __slots__ = ("closed", "id", "keepalive", "queue", "stream", "wake", "writer_task")

    def __init__(self, conn_id: int, stream: _PlainStream, queue: SendQueue) -> None:
        self.id = conn_id
        self.stream = stream
        self.queue = queue
        self.wake = asyncio.Event()
        self.closed = False
        self.writer_task: asyncio.Task | None = None
        self.keepalive: asyncio.TimerHandle | None = None

    def push(self, data: bytes, priority: bool) -> int:
        dropped = self.queue.push(data, priority)
        self.wake.set()
        return dropped

    def abort(self) -> None:
        self.closed = True
        self.stream.transport.abort()


@dataclass(slots=True)
class AdapterStats:
    queue_drops: int = 0  # frames dropped because a receiver's queue was full
    write_timeouts: int = 0  # receivers dropped for not reading
    handshake_timeouts: int = 0
    verify_errors: int = 0  # the verify hook raised or timed out (treated as refusal)
    websocket_accepts: int = 0


class DerpServer:
    """The embedded DERP server: one Relay, many connections."""

    def __init__(
        self,
        private_key: bytes,
        verify: VerifyHook | None = None,
        keepalive: float = frames.KEEPALIVE_SECONDS,
        *,
        mesh_key: bytes | None = None,
        keepalive_jitter: float = KEEPALIVE_JITTER,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
        write_timeout: float | None = WRITE_TIMEOUT,
        queue_frames: int = DEFAULT_MAX_FRAMES,
        queue_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.relay = Relay(private_key, mesh_key=mesh_key)
        self._verify = verify
        self._keepalive = keepalive
        self._keepalive_jitter = keepalive_jitter
        self._handshake_timeout = handshake_timeout
        self._write_timeout = write_timeout
        self._queue_frames = queue_frames
        self._queue_bytes = queue_bytes
        self._clients: dict[int, _Client] = {}
        self.adapter_stats = AdapterStats()

    @property
    def public_key(self) -> str:
        """The server's key as ``nodekey:<hex>`` (what a DERPNode would pin)."""
        return NODE_PUBLIC + self.relay.public_key.hex()

    # --- counters for metrics -----------------------------------------------------------

    @property
    def clients_connected(self) -> int:
        return self.relay.stats.clients

    @property
    def packets_relayed(self) -> int:
        return self.relay.stats.packets_relayed

    @property
    def packets_dropped(self) -> int:
        return sum(self.relay.stats.packets_dropped.values()) + self.adapter_stats.queue_drops

    def buffered_bytes(self) -> int:
        """Bytes waiting to go out, over all connections (queues plus socket write buffers)."""
        total = 0
        for client in self._clients.values():
            total += client.queue.nbytes
            if not client.stream.transport.is_closing():
                total += client.stream.transport.get_write_buffer_size()
        return total

    def stats(self) -> dict[str, int]:
        r = self.relay.stats
        a = self.adapter_stats
        return {
            "connections_total": r.connections,
            "connections_open": len(self._clients),
            "clients_connected": r.clients,
            "home_clients": r.home_clients,
            "packets_relayed": r.packets_relayed,
            "bytes_relayed": r.bytes_relayed,
            "packets_dropped": self.packets_dropped,
            "packets_dropped_unknown_dest": r.packets_dropped["unknown_dest"],
            "packets_dropped_queue_full": a.queue_drops,
            "peer_gone_disconnected": r.peer_gone_disconnected,
            "peer_gone_not_here": r.peer_gone_not_here,
            "clients_refused": r.closed["refused"],
            "protocol_errors": sum(
                n for reason, n in r.closed.items() if reason not in ("refused", "closed_by_server")
            ),
            "handshake_timeouts": a.handshake_timeouts,
            "write_timeouts": a.write_timeouts,
            "websocket_accepts": a.websocket_accepts,
            "buffered_bytes": self.buffered_bytes(),
        }

    # --- control ------------------------------------------------------------------------

    def close_client(self, node_key: str) -> int:
        """Disconnect every connection of ``nodekey:<hex>`` (node deleted or expired)."""
        try:
            raw = parse_key(node_key, NODE_PUBLIC)
        except KeyError_:
            return 0
        n = len(self.relay.conns_of(raw))
        self._apply(self.relay.close_key(raw))
        return n

    def close_all(self) -> None:
        """Drop every connection (server shutdown); clients reconnect elsewhere or later."""
        for client in list(self._clients.values()):
            client.abort()

    # --- one connection -----------------------------------------------------------------

    async def handle(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        method: str,
        path: str,
        headers: dict[str, str],
    ) -> None:
        """Serve one connection whose request head the edge listener has already read."""
        try:
            stream = await self._upgrade(reader, writer, method, path, headers)
            if stream is not None:
                await self._serve(stream, writer, headers)
        except (ConnectionError, OSError):
            pass
        finally:
            if not writer.transport.is_closing():
                writer.transport.abort()

    async def _upgrade(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        method: str,
        path: str,
        headers: dict,
    ) -> _PlainStream | None:
        if path.split("?", 1)[0] in ("/derp/probe", "/derp/latency-check"):
            if method in ("GET", "HEAD"):
                await _respond(writer, 200, "", {"Access-Control-Allow-Origin": "*"})
            else:
                await _respond(writer, 405, "bogus probe method\n")
            return None
        upgrade = headers.get("upgrade", "").strip().lower()
        if upgrade not in ("derp", "websocket"):
            await _respond(writer, 426, "DERP requires connection upgrade\n")
            return None
        # Early clients sent "Upgrade: WebSocket" but spoke plain DERP: only the subprotocol
        # tells a real WebSocket client apart.
        if upgrade == "websocket" and "derp" in headers.get("sec-websocket-protocol", ""):
            return await self._accept_websocket(reader, writer, method, path, headers)
        if headers.get("derp-fast-start", "") != "1":
            writer.write(
                b"HTTP/1.1 101 Switching Protocols\r\n"
                b"Upgrade: DERP\r\n"
                b"Connection: Upgrade\r\n"
                b"Derp-Version: %d\r\n"
                b"Derp-Public-Key: %s\r\n\r\n"
                % (frames.PROTOCOL_VERSION, self.relay.public_key.hex().encode())
            )
        return _PlainStream(reader, writer)

    async def _accept_websocket(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        method: str,
        path: str,
        headers: dict,
    ) -> _PlainStream | None:
        # wsproto wants the raw request: rebuild it from the head the edge already parsed.
        lines = [f"{method} {path} HTTP/1.1"]
        if "host" not in headers:
            lines.append("host: derp")
        lines += [f"{name}: {value}" for name, value in headers.items()]
        ws = WSConnection(ConnectionType.SERVER)
        try:
            ws.receive_data(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            request = next((e for e in ws.events() if isinstance(e, Request)), None)
        except RemoteProtocolError:
            request = None
        if request is None or "derp" not in request.subprotocols:
            await _respond(writer, 400, "bad WebSocket upgrade\n")
            return None
        writer.write(ws.send(AcceptConnection(subprotocol="derp")))
        self.adapter_stats.websocket_accepts += 1
        return _WebSocketStream(reader, writer, ws)

    async def _serve(self, stream: _PlainStream, writer: asyncio.StreamWriter, headers: dict) -> None:
        loop = asyncio.get_running_loop()
        relay = self.relay
        peer = writer.get_extra_info("peername")
        ip, port = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) and len(peer) >= 2 else (None, 0)
        if ip is not None:
            real = peer_address(peer, headers)   # behind a trusted proxy: the client, port unknown
            if real != ip:
                ip, port = real, 0
        conn_id, actions = relay.connect(
            loop.time(), remote_ip=ip, remote_port=port, not_ideal=bool(headers.get("ideal-node"))
        )
        client = _Client(conn_id, stream, SendQueue(self._queue_frames, self._queue_bytes))
        self._clients[conn_id] = client
        client.writer_task = asyncio.create_task(self._write_loop(client))
        deadline: float | None = loop.time() + self._handshake_timeout
        try:
            self._apply(actions)
            while not client.closed:
                if deadline is not None and relay.state_of(conn_id) is ConnState.ACTIVE:
                    deadline = None  # logged in: no more read deadline, keepalives from now on
                    self._schedule_keepalive(client, loop)
                if deadline is None:
                    data = await stream.read()
                else:
                    try:
                        async with asyncio.timeout_at(deadline):
                            data = await stream.read()
                    except TimeoutError:
                        self.adapter_stats.handshake_timeouts += 1
                        break
                if not data:
                    break
                actions = relay.receive_data(conn_id, data, loop.time())
                if actions:
                    for check in self._apply(actions):
                        allowed = await self._check(check, deadline)
                        self._apply(relay.verified(check.conn, allowed, loop.time()))
        finally:
            self._apply(relay.disconnect(conn_id))
            self._forget(client)

    async def _check(self, check: Verify, deadline: float | None) -> bool:
        if self._verify is None:
            return True
        try:
            async with asyncio.timeout_at(deadline):
                return bool(await self._verify(check.node_key))
        except Exception:
            self.adapter_stats.verify_errors += 1
            log.warning("derp verify hook failed for %s; refusing", check.node_key[:16], exc_info=True)
            return False

    def _apply(self, actions: list) -> list[Verify]:
        """Perform Send/Close actions; return the Verify ones for the caller to await."""
        clients = self._clients
        checks: list[Verify] = []
        woken: set[_Client] = set()
        drops = 0
        for a in actions:
            kind = type(a)
            if kind is Send:
                client = clients.get(a.conn)
                if client is not None and not client.closed:
                    drops += client.queue.push(a.data, a.priority)
                    woken.add(client)
            elif kind is Close:
                client = clients.get(a.conn)
                if client is not None:
                    log.debug("derp conn %d closed: %s %s", a.conn, a.reason, a.detail)
                    client.abort()
            elif kind is Verify:
                checks.append(a)
        for client in woken:
            client.wake.set()
        self.adapter_stats.queue_drops += drops
        return checks

    async def _write_loop(self, client: _Client) -> None:
        stream = client.stream
        transport = stream.transport
        writer = stream.writer
        queue = client.queue
        wake = client.wake
        try:
            while not client.closed:
                await wake.wait()
                wake.clear()
                data = queue.take()
                if not data:
                    continue
                stream.write(data)
                if self._write_timeout is not None and transport.get_write_buffer_size() > _high_water(
                    transport
                ):
                    try:
                        async with asyncio.timeout(self._write_timeout):
                            await writer.drain()
                    except TimeoutError:
                        self.adapter_stats.write_timeouts += 1
                        client.abort()
                        return
                else:
                    await writer.drain()
        except (ConnectionError, OSError, RuntimeError):
            client.abort()

    def _schedule_keepalive(self, client: _Client, loop: asyncio.AbstractEventLoop) -> None:
        def fire() -> None:
            if not client.closed:
                client.push(frames.KEEP_ALIVE_FRAME, True)
                self._schedule_keepalive(client, loop)

        client.keepalive = loop.call_later(self._keepalive + random.uniform(0, self._keepalive_jitter), fire)

    def _forget(self, client: _Client) -> None:
        client.closed = True
        self._clients.pop(client.id, None)
        if client.keepalive is not None:
            client.keepalive.cancel()
        if client.writer_task is not None:
            client.writer_task.cancel()
        client.queue.clear()
        client.stream.transport.abort()


def _high_water(transport: asyncio.BaseTransport) -> int:
    try:
        return transport.get_write_buffer_limits()[1]  # type: ignore[attr-defined]
    except (AttributeError, NotImplementedError):
        return 1 << 16


_REASONS = {200: "OK", 400: "Bad Request", 405: "Method Not Allowed", 426: "Upgrade Required"}


async def _respond(
    writer: asyncio.StreamWriter, status: int, body: str, extra: dict[str, str] | None = None
) -> None:
    raw = body.encode()
    head = [
        f"HTTP/1.1 {status} {_REASONS.get(status, '')}",
        f"Content-Length: {len(raw)}",
        "Connection: close",
    ]
    if raw:
        head.append("Content-Type: text/plain; charset=utf-8")
    head += [f"{k}: {v}" for k, v in (extra or {}).items()]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + raw)
    writer.close()  # flushes first; an abort could reset the connection before the client reads
    try:
        async with asyncio.timeout(5):
            await writer.wait_closed()
    except (TimeoutError, ConnectionError, OSError):
        writer.transport.abort()
