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
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from h2.connection import ConnectionState
from h2.stream import StreamState

from app.server import logguard
from app.server.h2frames import Credit, Inbound, Outgoing, data_frames

log = logging.getLogger("headscale.h2")

# Limits per connection, before anyone has logged in (tuning.noise_max_streams sets the first).
# Received request bytes are acknowledged (flow-control credit returned) only when the request
# is handed to its handler or dropped, so the connection window bounds what one connection can
# make us buffer: a peer that sends more than it was given breaks the protocol and is closed.
MAX_STREAMS = 100                  # concurrent streams; h2 enforces it from the start
                                   # (a peer opening more breaks the protocol: closed)
MAX_BODY = 1 << 20                 # per request body, as headscale; more gets 413
STREAM_WINDOW = MAX_BODY + 16384   # room to notice a body over MAX_BODY and answer 413
CONN_WINDOW = 2 << 20              # unfinished request bytes per connection


@dataclass
class Request:
    stream_id: int
    method: str
    path: str
    headers: dict[str, str]
    body: bytearray = field(default_factory=bytearray)
    unacked: int = 0                   # flow-controlled bytes not yet credited back


class StreamClosed(Exception):
    pass


_SENDING = frozenset({StreamState.OPEN, StreamState.HALF_CLOSED_REMOTE})   # may carry DATA


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

    async def send(self, data: bytes | list[bytes | memoryview], end: bool = False) -> None:
        """Send ``data`` (bytes, or pieces that concatenate to them) on the stream."""
        await self.server.send_data(self.stream_id, data, end)
        self.ended = end

    def try_send(self, data: bytes) -> bool:
        """Write ``data`` at once if nothing has to wait for it (see H2Server.try_send)."""
        return self.server.try_send(self.stream_id, data)

    async def simple(self, status: int, body: bytes = b"", content_type: str = "application/json") -> None:
        headers = [("content-type", content_type), ("content-length", str(len(body)))]
        await self.start(status, headers)
        await self.send(body, end=True)


Handler = Callable[[Request, Response], Awaitable[None]]


class _Connection(h2.connection.H2Connection):
    # h2 remembers how each closed stream ended (65,536 per connection by default), so that a
    # late frame on a reset stream gets a RST_STREAM instead of ending the connection. Every map
    # request is a new stream on a node's connection that lives for days: that was memory
    # growing with every request (found by bench/soak.py). A client has a handful of streams in
    # flight, so the last 16 are plenty (DATA on a forgotten stream still gets a RST_STREAM).
    MAX_CLOSED_STREAMS = 16


class H2Server:
    def __init__(self, write: Callable[[bytes], None], drain: Callable[[], Awaitable[None]], handler: Handler,
                 max_streams: int = MAX_STREAMS, writable: Callable[[], bool] | None = None,
                 write_parts: Callable[[list[bytes | memoryview]], None] | None = None) -> None:
        self.max_streams = max_streams
        # writes the concatenation of its pieces (the Noise layer seals straight from them)
        self._write_parts = write_parts or (lambda parts: self._write(b"".join(parts)))
        self._writable = writable   # the socket takes a write without waiting (try_send)
        self._clock = asyncio.get_running_loop().time
        self.last_activity = self._clock()   # last request bytes, or the end of the last answer
        self._write = write
        self._drain = drain
        self.handler = handler
        # Headers arrive as bytes and are decoded per stream: a header that is not UTF-8 is that
        # stream's 400, where h2's own decoding would raise out of receive_data for the whole
        # connection.
        config = h2.config.H2Configuration(client_side=False, header_encoding=None)
        self.conn = _Connection(config=config)
        self._inbound = Inbound(self.conn)
        self.requests: dict[int, Request] = {}
        self.tasks: dict[int, asyncio.Task] = {}
        self.window_open: dict[int, asyncio.Event] = {}
        self.closed = False

    async def start(self) -> None:
        self.conn.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self.max_streams,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
            },
        )
        self.conn.initiate_connection()
        self.conn.increment_flow_control_window(CONN_WINDOW - self.conn.inbound_flow_control_window)
        await self.flush()

    async def flush(self) -> None:
        data = self.conn.data_to_send()
        if data and not self.closed:
            self._write(data)
            await self._drain()

    async def receive(self, data: bytes) -> None:
        """Feed decrypted bytes; raises h2 ProtocolError on a broken peer (caller closes)."""
        for part in self._inbound.split(data):
            if part.__class__ is Credit:
                self._window_opened(part.stream_id)   # type: ignore[union-attr]
            else:
                await self._handle(self.conn.receive_data(part))
        await self.flush()

    def _window_opened(self, stream_id: int) -> None:
        if stream_id == 0:
            for e in self.window_open.values():
                e.set()
        elif stream_id in self.window_open:
            self.window_open[stream_id].set()

    async def _handle(self, events: list) -> None:
        for ev in events:
            if isinstance(ev, (h2.events.RequestReceived, h2.events.DataReceived)):
                self.last_activity = self._clock()
            if isinstance(ev, h2.events.RequestReceived):
                try:
                    hdrs = {bytes(k).decode(): bytes(v).decode() for k, v in ev.headers}
                except UnicodeDecodeError:
                    await self._refuse(ev.stream_id, 400, b"request headers must be UTF-8")
                    continue
                self.requests[ev.stream_id] = Request(
                    ev.stream_id, hdrs.get(":method", ""), hdrs.get(":path", ""), hdrs
                )
                if ev.stream_ended:
                    self._dispatch(ev.stream_id)
            elif isinstance(ev, h2.events.DataReceived):
                req = self.requests.get(ev.stream_id)
                if req is None:
                    self._credit(ev.flow_controlled_length, ev.stream_id)
                    continue
                req.unacked += ev.flow_controlled_length
                if len(req.body) + len(ev.data) > MAX_BODY:
                    self._drop(ev.stream_id)
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
                self._window_opened(ev.stream_id)
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self.closed = True

    def _credit(self, n: int, stream_id: int) -> None:
        if n:
            self.conn.acknowledge_received_data(n, stream_id)

    def _drop(self, stream_id: int) -> Request | None:
        """Forget a stream's unfinished request and give its bytes' credit back."""
        req = self.requests.pop(stream_id, None)
        if req is not None:
            self._credit(req.unacked, stream_id)
            req.unacked = 0
        return req

    def _dispatch(self, stream_id: int) -> None:
        req = self._drop(stream_id)
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
        except Exception as exc:  # noqa: BLE001 - answered 500; logged once per path and error per minute
            logguard.failed(log, f"{req.method} {req.path[:64]}", "request handler failed", exc)
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
            self.last_activity = self._clock()

    async def _refuse(self, stream_id: int, status: int, body: bytes) -> None:
        try:
            self.conn.send_headers(stream_id, [(":status", str(status)), ("content-length", str(len(body)))])
            self.conn.send_data(stream_id, body, end_stream=True)
        except h2.exceptions.ProtocolError:
            pass

    def _cancel(self, stream_id: int) -> None:
        self._drop(stream_id)
        task = self.tasks.pop(stream_id, None)
        if task is not None:
            task.cancel()
        ev = self.window_open.pop(stream_id, None)
        if ev is not None:
            ev.set()

    async def send_data(self, stream_id: int, data: bytes | list[bytes | memoryview], end: bool) -> None:
        """Send ``data`` (bytes, or pieces that concatenate to them) on a response stream in DATA
        frames, waiting for flow-control window.

        Frames the window allows are written at once: one encrypt and one socket write per
        message however many 16 KiB frames it spans. DATA frames that do not end the stream are
        framed here rather than by h2 (its per-frame objects, copies and checks cost more than
        the encryption of a small map delta); they change no h2 state but the two send windows,
        which are debited exactly as h2 does. The frame that ends the stream goes through h2.
        """
        rest = Outgoing(data)
        conn = self.conn
        while True:
            stream = self._sending(stream_id)
            if stream is None:
                raise StreamClosed()
            window = min(conn.outbound_flow_control_window, stream.outbound_flow_control_window)
            if not rest.size:
                if end:
                    conn.end_stream(stream_id)
                    await self.flush()
                return
            if window <= 0:
                ev = self.window_open.setdefault(stream_id, asyncio.Event())
                ev.clear()
                await ev.wait()
                continue
            take = min(window, rest.size)
            last = end and take == rest.size
            # the frame that ends the stream is h2's; all others are framed here
            fast = take - min(take, conn.max_outbound_frame_size) if last else take
            out = self._frames(stream, rest.take(fast))
            if last:
                conn.send_data(stream_id, b"".join(rest.take(take - fast)), end_stream=True)
                out.append(conn.data_to_send())
            if not self.closed:
                self._write_parts(out)
            await self._drain()
            if last:
                return

    def try_send(self, stream_id: int, data: bytes) -> bool:
        """Write ``data`` (not ending the stream) now, if nothing has to wait for it: the
        stream open, its window big enough for all of it, and the socket's buffer below the
        high-water mark. False (and nothing written) otherwise; then ``send_data`` it."""
        stream = self._sending(stream_id)
        if stream is None or self._writable is None or not self._writable() \
                or len(data) > min(self.conn.outbound_flow_control_window, stream.outbound_flow_control_window):
            return False
        self._write_parts(self._frames(stream, [memoryview(data)]))
        return True

    def _sending(self, stream_id: int) -> Any:
        """The h2 stream, if DATA may still be sent on it."""
        if self.closed:
            return None
        stream = self.conn.streams.get(stream_id)
        if stream is None or stream.state_machine.state not in _SENDING \
                or self.conn.state_machine.state is ConnectionState.CLOSED:
            return None
        return stream

    def _frames(self, stream: Any, parts: list[memoryview]) -> list[bytes | memoryview]:
        """What h2 queued earlier (SETTINGS ack, ...), then DATA frames carrying ``parts``; the
        send windows are debited as h2 does."""
        conn = self.conn
        out: list[bytes | memoryview] = [conn.data_to_send()]
        size = sum(map(len, parts))
        if size:
            out += data_frames(parts, stream.stream_id, conn.max_outbound_frame_size)
            conn.outbound_flow_control_window -= size
            stream.outbound_flow_control_window -= size
        return out

    def close(self) -> None:
        self.closed = True
        for task in list(self.tasks.values()):
            task.cancel()
        for ev in self.window_open.values():
            ev.set()
