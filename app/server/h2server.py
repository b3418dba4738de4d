"""HTTP/2 (prior knowledge) server over an already-established byte channel.

Used inside the Noise transport of TS2021: the client multiplexes register, map long-polls
and lite updates as concurrent streams on one connection (PROTOCOL.md 2.6). The ``h2``
library is the sans-I/O state machine; this module pumps bytes and honours flow control.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

log = logging.getLogger("headscale.h2")

MAX_BODY = 1 << 20                 # headscale caps request bodies at 1 MiB
MAX_STREAMS = 250
WINDOW = 1 << 20


@dataclass
class Request:
    stream_id: int
    method: str
    path: str
    headers: dict[str, str]
    body: bytearray = field(default_factory=bytearray)


class StreamClosed(Exception):
    pass


class Response:
    """Writes one response stream; ``send`` waits for flow-control window."""

    def __init__(self, server: H2Server, stream_id: int) -> None:
        self.server = server
        self.stream_id = stream_id
        self.headers_sent = False
        self.ended = False

    async def start(self, status: int, headers: list[tuple[str, str]] | None = None) -> None:
        hdrs = [(":status", str(status))] + list(headers or [])
        self.server.conn.send_headers(self.stream_id, hdrs)
        self.headers_sent = True
        await self.server.flush()

    async def send(self, data: bytes, end: bool = False) -> None:
        await self.server.send_data(self.stream_id, data, end)
        self.ended = end

    async def simple(self, status: int, body: bytes = b"", content_type: str = "application/json") -> None:
        headers = [("content-type", content_type), ("content-length", str(len(body)))]
        await self.start(status, headers)
        await self.send(body, end=True)


Handler = Callable[[Request, Response], Awaitable[None]]


class H2Server:
    def __init__(self, write: Callable[[bytes], None], drain: Callable[[], Awaitable[None]], handler: Handler) -> None:
        self._write = write
        self._drain = drain
        self.handler = handler
        config = h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        self.conn = h2.connection.H2Connection(config=config)
        self.requests: dict[int, Request] = {}
        self.tasks: dict[int, asyncio.Task] = {}
        self.window_open: dict[int, asyncio.Event] = {}
        self.closed = False

    async def start(self) -> None:
        self.conn.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: MAX_STREAMS,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: WINDOW,
            },
        )
        self.conn.initiate_connection()
        self.conn.increment_flow_control_window(WINDOW)
        await self.flush()

    async def flush(self) -> None:
        data = self.conn.data_to_send()
        if data and not self.closed:
            self._write(data)
            await self._drain()

    async def receive(self, data: bytes) -> None:
        """Feed decrypted bytes; raises h2 ProtocolError on a broken peer (caller closes)."""
        events = self.conn.receive_data(data)
        for ev in events:
            if isinstance(ev, h2.events.RequestReceived):
                hdrs = dict(ev.headers)
                self.requests[ev.stream_id] = Request(
                    ev.stream_id, hdrs.get(":method", ""), hdrs.get(":path", ""), hdrs
                )
                if ev.stream_ended:
                    self._dispatch(ev.stream_id)
            elif isinstance(ev, h2.events.DataReceived):
                req = self.requests.get(ev.stream_id)
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                if req is None:
                    continue
                if len(req.body) + len(ev.data) > MAX_BODY:
                    self.requests.pop(ev.stream_id, None)
                    await self._refuse(ev.stream_id, 413, b"request body too large")
                    continue
                req.body += ev.data
                if ev.stream_ended:
                    self._dispatch(ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                if ev.stream_id in self.requests and ev.stream_id not in self.tasks:
                    self._dispatch(ev.stream_id)
            elif isinstance(ev, h2.events.StreamReset):
                self._cancel(ev.stream_id)
            elif isinstance(ev, h2.events.WindowUpdated):
                if ev.stream_id == 0:
                    for e in self.window_open.values():
                        e.set()
                elif ev.stream_id in self.window_open:
                    self.window_open[ev.stream_id].set()
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self.closed = True
        await self.flush()

    def _dispatch(self, stream_id: int) -> None:
        req = self.requests.pop(stream_id, None)
        if req is None or stream_id in self.tasks:
            return
        resp = Response(self, stream_id)
        task = asyncio.create_task(self._run(req, resp))
        self.tasks[stream_id] = task

    async def _run(self, req: Request, resp: Response) -> None:
        try:
            await self.handler(req, resp)
            if not resp.headers_sent:
                await resp.simple(204)
            elif not resp.ended:
                await resp.send(b"", end=True)
        except (StreamClosed, asyncio.CancelledError):
            pass
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            pass
        except Exception:
            log.exception("handler for %s %s failed", req.method, req.path)
            try:
                if not resp.headers_sent:
                    await resp.simple(500, b"internal error", "text/plain")
                else:
                    self.conn.reset_stream(req.stream_id)
                    await self.flush()
            except Exception:  # noqa: BLE001, S110 - the connection is already broken; nothing to tell
                pass
        finally:
            self.tasks.pop(req.stream_id, None)
            self.window_open.pop(req.stream_id, None)

    async def _refuse(self, stream_id: int, status: int, body: bytes) -> None:
        try:
            self.conn.send_headers(stream_id, [(":status", str(status)), ("content-length", str(len(body)))])
            self.conn.send_data(stream_id, body, end_stream=True)
        except h2.exceptions.ProtocolError:
            pass

    def _cancel(self, stream_id: int) -> None:
        self.requests.pop(stream_id, None)
        task = self.tasks.pop(stream_id, None)
        if task is not None:
            task.cancel()
        ev = self.window_open.pop(stream_id, None)
        if ev is not None:
            ev.set()

    async def send_data(self, stream_id: int, data: bytes, end: bool) -> None:
        view = memoryview(data)
        while True:
            if self.closed:
                raise StreamClosed()
            if not view:
                if end:
                    self.conn.end_stream(stream_id)
                    await self.flush()
                return
            try:
                window = min(self.conn.local_flow_control_window(stream_id), self.conn.max_outbound_frame_size)
            except h2.exceptions.StreamClosedError:
                raise StreamClosed() from None
            if window <= 0:
                ev = self.window_open.setdefault(stream_id, asyncio.Event())
                ev.clear()
                await ev.wait()
                continue
            chunk = view[:window]
            view = view[window:]
            last = end and not view
            self.conn.send_data(stream_id, bytes(chunk), end_stream=last)
            await self.flush()
            if last:
                return

    def close(self) -> None:
        self.closed = True
        for task in list(self.tasks.values()):
            task.cancel()
        for ev in self.window_open.values():
            ev.set()
