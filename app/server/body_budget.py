"""One process-wide budget for request bodies held in memory (plain HTTP and the API).

Each connection may send at most 4 MiB per request (Quart's MAX_CONTENT_LENGTH) and each
source 256 connections, but without a global bound 600 concurrent 3 MB POSTs held 250-345 MiB
(issue 11, section 2); the Fly machine has 256 MB. So every request with a body first reserves
its declared length (``Content-Length``, or the 4 MiB cap for a chunked body) from
``tuning.max_buffered_request_bytes``:

- while it waits for room, its connection is not read (``BodyBudgetApp`` closes the
  connection's gate, which app/server/edge.py's reader awaits): the client is held back by TCP
  flow control instead of filling our buffers;
- the reservations are granted first come, first served, and a request gets all of its bytes at
  once, so many half-read bodies can never deadlock the budget;
- the whole body must arrive within ``tuning.request_body_timeout`` of the request's start
  (waiting for room included): otherwise 503 (no room in time; ``Retry-After``) or 408 (the
  client was too slow), and the connection is closed;
- the reservation is held until the response is finished (the app keeps the body until then).

Requests without a body (``/health``, GETs) never wait.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import time
from collections import deque

MAX_BODY = 4 * 1024 * 1024     # as app/server/web.py's MAX_CONTENT_LENGTH


class ByteBudget:
    """Bytes reserved by requests in flight; ``acquire`` waits in FIFO order."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.peak = 0
        self.waited = 0      # requests that had to wait for room
        self.refused = 0     # requests that got no room in time (503)
        self._waiters: deque[tuple[int, asyncio.Future]] = deque()

    async def acquire(self, n: int, timeout: float) -> int | None:
        """Reserve ``n`` bytes (at most the whole budget); the amount reserved, or None when no
        room came within ``timeout``."""
        n = max(0, min(n, self.limit))
        if not self._waiters and self.used + n <= self.limit:
            self._take(n)
            return n
        self.waited += 1
        fut = asyncio.get_running_loop().create_future()
        entry = (n, fut)
        self._waiters.append(entry)
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout)
            return n
        except TimeoutError:
            if fut.done() and not fut.cancelled():
                self.release(n)      # granted just as the wait ran out: give it back
            self.refused += 1
            return None
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release(n)
            raise
        finally:
            if entry in self._waiters:
                self._waiters.remove(entry)
                self._wake()

    def release(self, n: int) -> None:
        self.used -= n
        self._wake()

    def _take(self, n: int) -> None:
        self.used += n
        self.peak = max(self.peak, self.used)

    def _wake(self) -> None:
        while self._waiters:
            n, fut = self._waiters[0]
            if fut.done():
                self._waiters.popleft()
                continue
            if self.used + n > self.limit:
                return
            self._waiters.popleft()
            self._take(n)
            fut.set_result(None)


class Gate:
    """Per connection: shut while its request waits for budget. Then the socket reader awaits it
    and the transport is paused, so the kernel holds the client back (asyncio would otherwise
    receive up to 256 KiB more per connection into its buffer)."""

    def __init__(self, transport=None, closed: bool = False, timeout: float = 30.0) -> None:
        self.open = asyncio.Event()
        self.timeout = timeout
        self._transport = transport
        if closed:
            self.shut()
        else:
            self.open.set()

    def shut(self) -> None:
        self.open.clear()
        if self._transport is not None and not self._transport.is_closing():
            self._transport.pause_reading()

    def release(self) -> None:
        self.open.set()
        if self._transport is not None and not self._transport.is_closing():
            full_reads(self._transport)
            self._transport.resume_reading()   # a no-op when it is reading

    async def wait(self) -> None:
        # A safety net only: the request that shut the gate opens it again within its body
        # timeout; should no request ever claim it (hypercorn refused the head), read anyway.
        try:
            await asyncio.wait_for(self.open.wait(), self.timeout + 1)
        except TimeoutError:
            self.release()


# asyncio receives up to 256 KiB per read into a connection's buffer. Until a request is known
# to have room in the budget, reads are small: 600 waiting connections each holding one such
# read were 150 MiB. (Plain TCP only; a TLS transport has no such knob and keeps its default.)
SMALL_READ = 32 * 1024


def small_reads(transport) -> None:
    if isinstance(getattr(transport, "max_size", None), int):
        transport.max_size = SMALL_READ


def full_reads(transport) -> None:
    if "max_size" in getattr(transport, "__dict__", {}):
        transport.max_size = type(transport).max_size   # back to the default


# Set by the edge for each plain-HTTP connection; hypercorn's request tasks inherit it.
current_gate: contextvars.ContextVar[Gate | None] = contextvars.ContextVar("body_gate", default=None)


def _declared_length(scope) -> int | None:
    """The bytes to reserve: Content-Length (capped), the cap for a chunked body, None for none."""
    length = None
    chunked = False
    for name, value in scope.get("headers") or ():
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                return None      # hypercorn rejects it before the app runs
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        return MAX_BODY
    if not length:
        return None
    return length


class BodyBudgetApp:
    """ASGI middleware: reserve, read the whole body within the timeout, then run the app."""

    def __init__(self, app, budget: ByteBudget, timeout: float) -> None:
        self.app = app
        self.budget = budget
        self.timeout = timeout

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = _declared_length(scope)
        gate = current_gate.get()
        if length is None or length > MAX_BODY:
            # No body, or one Quart refuses with 413 before reading a byte of it.
            if gate is not None:
                gate.release()
            return await self.app(scope, receive, send)
        start = time.monotonic()
        if gate is not None:
            gate.shut()
        try:
            got = await self.budget.acquire(length, self.timeout)
        finally:
            if gate is not None:
                gate.release()
        if got is None:
            return await _error(send, 503, "the server is busy receiving other requests; retry shortly",
                                [(b"retry-after", b"2")])
        try:
            body = await self._read(receive, start, got)
            if isinstance(body, int):
                if body:
                    await _error(send, body, "request body too large (at most 4 MiB)" if body == 413
                                 else f"request body not received within {self.timeout:g} s")
                return
            await self.app(scope, _replay(body, receive), send)
        finally:
            self.budget.release(got)

    async def _read(self, receive, start: float, allowed: int) -> deque[bytes] | int:
        """The whole body's chunks; or 408 (too slow), 413 (more than reserved), 0 (client gone)."""
        parts: deque[bytes] = deque()
        size = 0
        while True:
            left = start + self.timeout - time.monotonic()
            try:
                msg = await asyncio.wait_for(receive(), max(left, 0.001))
            except TimeoutError:
                return 408
            if msg["type"] != "http.request":
                return 0
            chunk = msg.get("body", b"")
            size += len(chunk)
            if size > allowed:
                return 413
            parts.append(chunk)
            if not msg.get("more_body", False):
                return parts


def _replay(parts: deque[bytes], receive):
    """The body again, chunk by chunk (no joined copy: each chunk is dropped once handed on)."""

    async def replay():
        if parts:
            chunk = parts.popleft()
            return {"type": "http.request", "body": chunk, "more_body": bool(parts)}
        return await receive()

    return replay


async def _error(send, status: int, message: str, headers: list | None = None) -> None:
    codes = {408: 4, 413: 8, 503: 14}     # grpc-gateway's codes, as app/server/api_v1.py
    payload = json.dumps({"code": codes.get(status, 2), "message": message, "details": []}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"connection", b"close"),
                            (b"content-length", str(len(payload)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": payload, "more_body": False})
