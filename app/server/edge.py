"""The edge listener: one port for control (TS2021), DERP and ordinary HTTP.

It reads the first HTTP/1.1 request head of each connection itself. ``/ts2021`` and ``/derp``
upgrades take over the raw stream (hypercorn cannot hand over an upgraded socket); anything
else is passed to hypercorn's connection handler with the already-read bytes fed back in, so
Quart sees the request untouched. Uses hypercorn's internal ``TCPServer`` (version pinned).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.asyncio.worker_context import WorkerContext
from hypercorn.config import Config as HyperConfig
from hypercorn.events import Event, Updated
from hypercorn.utils import wrap_app

from app.server import logguard
from app.server.body_budget import BodyBudgetApp, ByteBudget, Gate, current_gate, full_reads, small_reads
from app.server.limits import Admission

log = logging.getLogger("headscale.edge")

MAX_HEAD = 16 * 1024
HEAD_TIMEOUT = 10.0        # tuning.request_head_timeout
HTTP_IDLE_TIMEOUT = 30.0   # tuning.http_idle_timeout
BODY_TIMEOUT = 30.0        # tuning.request_body_timeout
BODY_BUDGET = 32 << 20     # tuning.max_buffered_request_bytes
# Connections the kernel may hold accepted before we take them (capped by net.core.somaxconn,
# as Go's listeners are). asyncio's default of 100 overflowed when every node reconnected
# after a restart: dropped SYNs wait out TCP's 1, 3, 7 s retransmits (TcpExtListenOverflows).
LISTEN_BACKLOG = 4096


@dataclass
class RequestHead:
    method: str
    path: str            # without the query string
    query: str
    version: str
    headers: dict[str, str] = field(default_factory=dict)   # lower-cased names, last value wins
    raw: bytes = b""

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")


class BadRequest(Exception):
    pass


def parse_head(raw: bytes) -> RequestHead:
    try:
        text = raw.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes anything
        raise BadRequest("undecodable request head") from None
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest("malformed request line")
    method, target, version = parts
    path, _, query = target.partition("?")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise BadRequest("malformed header line")
        headers[name.lower()] = value.strip()
    return RequestHead(method, path, query, version, headers, raw)


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, RequestHead], Awaitable[None]]


class Edge:
    """Routes connections: upgrade handlers by path, everything else to the ASGI app."""

    def __init__(self, app, *, upgrades: dict[str, Handler], trusted: bool = False,
                 admission: Admission | None = None, head_timeout: float = HEAD_TIMEOUT,
                 http_idle_timeout: float = HTTP_IDLE_TIMEOUT, budget: ByteBudget | None = None,
                 body_timeout: float = BODY_TIMEOUT) -> None:
        self.upgrades = upgrades
        self.admission = admission or Admission(0)
        self.head_timeout = head_timeout
        self.hyper = HyperConfig()
        self.hyper.keep_alive_timeout = http_idle_timeout
        # Request bodies count against one process-wide budget (app/server/body_budget.py).
        self.budget = budget or ByteBudget(BODY_BUDGET)
        self.body_timeout = body_timeout
        app = BodyBudgetApp(_Trusted(app) if trusted else app, self.budget, body_timeout)
        self.app = wrap_app(app, self.hyper.wsgi_max_body_size, None)
        self.context = WorkerContext(None)
        self.tasks: set[asyncio.Task] = set()
        self.servers: list[asyncio.AbstractServer] = []

    async def listen_tcp(self, host: str, port: int, tls: ssl.SSLContext | None = None) -> asyncio.AbstractServer:
        # The TLS handshake happens before _on_connection counts the connection: it gets the
        # head timeout too (asyncio's default is 60 s).
        extra = {"ssl_handshake_timeout": self.head_timeout} if tls is not None else {}
        server = await asyncio.start_server(self._on_connection, host, port, ssl=tls, limit=MAX_HEAD * 4,
                                            reuse_address=True, backlog=LISTEN_BACKLOG, **extra)
        self.servers.append(server)
        return server

    async def listen_unix(self, path: str) -> asyncio.AbstractServer:
        server = await asyncio.start_unix_server(self._on_connection, path, limit=MAX_HEAD * 4,
                                                 backlog=LISTEN_BACKLOG)
        self.servers.append(server)
        return server

    async def close(self) -> None:
        for s in self.servers:
            s.close()
        await self.context.terminated.set()
        for t in list(self.tasks):
            t.cancel()
        for s in self.servers:
            try:
                await asyncio.wait_for(s.wait_closed(), 2)
            except (TimeoutError, OSError):
                log.debug("listener did not close within 2 s")

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        key = self.admission.admit(peer)
        if key is None:
            # Over the per-source (or global) limit: give the descriptor back at once.
            logguard.refused(log, self.admission.key(peer, None), "connection refused: too many open connections")
            writer.transport.abort()
            return
        small_reads(writer.transport)   # until the request is known (app/server/body_budget.py)
        task = asyncio.current_task()
        if task is not None:
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        try:
            try:
                raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.head_timeout)
            except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, OSError, ssl.SSLError):
                writer.close()
                return
            if len(raw) > MAX_HEAD:
                await reply(writer, 431, "request head too large")
                return
            try:
                head = parse_head(raw)
            except BadRequest:
                # Not HTTP/1.1 (e.g. HTTP/2 prior knowledge): let hypercorn deal with it.
                await self._to_app(reader, writer, raw)
                return
            rekeyed = self.admission.rekey(key, peer, head)
            if rekeyed is None:
                logguard.refused(log, self.admission.key(peer, head), "connection refused: too many open connections")
                return
            key = rekeyed
            handler = self.upgrades.get(head.path)
            if handler is not None and head.header("upgrade"):
                full_reads(writer.transport)
                await handler(reader, writer, head)
            else:
                has_body = head.header("content-length") not in ("", "0") or bool(head.header("transfer-encoding"))
                await self._to_app(reader, writer, raw, has_body)
        except asyncio.CancelledError:
            # Swallowed on purpose: asyncio's stream callback logs a cancelled task as an error.
            pass
        except Exception as exc:  # noqa: BLE001 - one aggregated line per source, never a traceback flood
            logguard.failed(log, key, "connection handler failed", exc)
        finally:
            self.admission.release(key)
            if not writer.is_closing():
                writer.close()

    async def _to_app(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes,
                      has_body: bool = False) -> None:
        # hypercorn reads straight from the socket's reader (after the head we already took), so
        # the socket's flow control holds: a client sending faster than the app reads is paused
        # by the kernel instead of filling a buffer here. While a request waits for body budget
        # its gate is closed and the socket is not read at all.
        # A first request with a body starts with the gate closed: not a byte of it is read into
        # hypercorn's queue before the budget has room for it.
        gate = Gate(writer.transport, closed=has_body, timeout=self.body_timeout)
        if not has_body:
            full_reads(writer.transport)
        current_gate.set(gate)   # hypercorn's request tasks inherit it
        await _HttpConnection(self.app, asyncio.get_running_loop(), self.hyper, self.context, {},
                              _Prefixed(head, reader, gate), writer)


class _Prefixed:
    """The reader hypercorn sees: the already-read request head, then the socket."""

    def __init__(self, head: bytes, reader: asyncio.StreamReader, gate: Gate) -> None:
        self._head = head
        self._reader = reader
        self._gate = gate

    async def read(self, n: int) -> bytes:
        if self._head:
            data, self._head = self._head[:n], self._head[n:]
            return data
        if not self._gate.open.is_set():
            await self._gate.wait()
        return await self._reader.read(n)

    def at_eof(self) -> bool:
        return not self._head and self._reader.at_eof()


class _HttpConnection(TCPServer):
    """hypercorn's connection, released as soon as the peer closes.

    hypercorn keeps its keep-alive timer task in the connection's task group, so after the
    peer's FIN the task group (and the socket, in CLOSE-WAIT) waited for the whole keep-alive
    timeout. Stopping the timer when reading ends lets the connection close at once.
    """

    reading_done = False

    async def _read_data(self) -> None:
        await super()._read_data()
        self.reading_done = True
        await self.idle_task.stop()

    async def protocol_send(self, event: Event) -> None:
        if isinstance(event, Updated) and self.reading_done:
            return  # no keep-alive timer for a connection the peer has closed
        await super().protocol_send(event)


class _Trusted:
    """Marks requests that came in over the admin unix socket (local trust, no API key)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket"):
            scope = dict(scope)
            ext = dict(scope.get("extensions") or {})
            ext["headscale.trusted"] = True
            scope["extensions"] = ext
        await self.app(scope, receive, send)


async def reply(writer: asyncio.StreamWriter, status: int, text: str) -> None:
    reasons = {400: "Bad Request", 426: "Upgrade Required", 431: "Request Header Fields Too Large"}
    body = text.encode()
    writer.write(
        f"HTTP/1.1 {status} {reasons.get(status, 'Error')}\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body
    )
    try:
        await writer.drain()
    except (ConnectionError, OSError):
        pass
    writer.close()

