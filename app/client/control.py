"""A control-protocol client built from our own core: /key, TS2021 Noise, HTTP/2, register,
map streams. Used by the in-process tests and by the load generator in bench/; it plays the
part of tailscaled's controlclient (PROTOCOL.md 9).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import ssl
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from app.client.h2inbound import Data, Inbound
from app.client.wsclient import open_websocket
from app.core import keys
from app.core.map.wire import FrameReader
from app.core.noise import Initiator, NoiseTransport, reply_size, split_early_payload

WINDOW = 1 << 22   # receive window per stream and (on top of the initial 64 KiB) per connection


class _DirectReader(asyncio.StreamReader):
    """A StreamReader for the handshake; then ``divert`` hands every later byte straight to a
    callback as it arrives (what was already buffered first), and the end of the connection
    to another."""

    _sink: Any = None
    _on_end: Any = None

    def divert(self, sink: Any, on_end: Any) -> None:
        self._sink, self._on_end = sink, on_end
        pending = bytes(self._buffer)
        self._buffer.clear()
        if pending:
            self._deliver(pending)
        if self.at_eof() or self.exception() is not None:
            on_end()

    def _deliver(self, data: bytes) -> None:
        try:
            self._sink(data)
        except Exception:  # noqa: BLE001 - a broken server stream ends this connection, as a read loop would
            self._on_end()

    def feed_data(self, data: bytes) -> None:
        if self._sink is None:
            super().feed_data(data)
        elif data:
            self._deliver(data)

    def feed_eof(self) -> None:
        super().feed_eof()
        if self._on_end is not None:
            self._on_end()

    def set_exception(self, exc: BaseException) -> None:
        super().set_exception(exc)
        if self._on_end is not None:
            self._on_end()


class MessageSplitter:
    """Map stream bytes -> message bodies (u32 little-endian length, then the body; PROTOCOL.md
    3.3), still compressed. A message spanning many DATA frames is joined once, when whole."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._have = 0

    def feed(self, data: bytes) -> list[bytes]:
        chunks = self._chunks
        if not chunks and len(data) >= 4 and len(data) == 4 + int.from_bytes(data[:4], "little"):
            return [data[4:]]    # the common case: one whole message in one DATA frame
        chunks.append(data)
        self._have += len(data)
        out = []
        while self._have >= 4:
            if len(chunks[0]) < 4:
                chunks[:] = [b"".join(chunks)]
            n = int.from_bytes(chunks[0][:4], "little")
            if self._have < 4 + n:
                break
            joined = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            rest = joined[4 + n:]
            chunks[:] = [rest] if rest else []
            self._have = len(rest)
            out.append(joined[4:4 + n])
        return out


def public_of(private: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(private).public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )


async def fetch_key(host: str, port: int, version: int = 130, tls: ssl.SSLContext | None = None,
                    server_name: str | None = None) -> bytes:
    reader, writer = await asyncio.open_connection(host, port, ssl=tls,
                                                   server_hostname=(server_name or host) if tls else None)
    try:
        writer.write(f"GET /key?v={version} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        data = await reader.read()
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    if b" 200 " not in head.split(b"\r\n", 1)[0]:
        raise RuntimeError(f"/key failed: {head[:80]!r}")
    return keys.parse_key(json.loads(body)["publicKey"], keys.MACHINE_PUBLIC)


class StreamState:
    def __init__(self) -> None:
        self.status: int | None = None
        self.headers_ready = asyncio.Event()
        self.data: asyncio.Queue[bytes | None] = asyncio.Queue()


class ControlClient:
    def __init__(self, host: str, port: int, *, machine_private: bytes | None = None,
                 node_private: bytes | None = None, disco_private: bytes | None = None,
                 version: int = 130, websocket: bool = False, tls: ssl.SSLContext | None = None,
                 server_name: str | None = None) -> None:
        self.tls, self.server_name = tls, server_name   # https:// control (server_name: SNI and checks)
        self.host, self.port, self.version = host, port, version
        self.websocket = websocket   # GET /ts2021 over WebSocket, as Tailscale's JS/WASM client
        self.machine_private = machine_private or keys.new_private()
        self.node_private = node_private or keys.new_private()
        self.disco_private = disco_private or keys.new_private()
        self._publics: dict[tuple[bytes, str], str] = {}
        self.conn: h2.connection.H2Connection | None = None
        self.transport: NoiseTransport | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.streams: dict[int, StreamState] = {}
        self._reader_task: asyncio.Task | None = None
        self.inbound: Inbound | None = None
        self._pending_early: bytes | None = b""   # early payload bytes until it is complete
        self.closed = asyncio.Event()
        self.early: Any = None

    @property
    def machine_key(self) -> str:
        return self._public(self.machine_private, keys.MACHINE_PUBLIC)

    @property
    def node_key(self) -> str:
        return self._public(self.node_private, keys.NODE_PUBLIC)

    @property
    def disco_key(self) -> str:
        return self._public(self.disco_private, keys.DISCO_PUBLIC)

    def _public(self, private: bytes, prefix: str) -> str:
        # Every request names the node key (header and body): a scalar multiplication each
        # time was ~0.1 ms per request across thousands of simulated nodes. Keyed by the private
        # key, so a test that rotates one gets the new public key.
        found = self._publics.get((private, prefix))
        if found is None:
            found = self._publics[(private, prefix)] = keys.format_key(public_of(private), prefix)
        return found

    async def connect(self, server_public: bytes | None = None) -> None:
        server_public = server_public or await fetch_key(self.host, self.port, self.version, self.tls,
                                                         self.server_name)
        direct: _DirectReader | None = None
        if self.websocket:
            init = Initiator(self.machine_private, server_public, self.version, keys.new_private())
            hs = base64.b64encode(init.initiation()).decode()
            target = "/ts2021?" + urlencode({"X-Tailscale-Handshake": hs})
            reader, writer = await open_websocket(self.host, self.port, target, "tailscale-control-protocol",
                                                  self.tls, self.server_name)
        else:
            loop = asyncio.get_running_loop()
            reader = direct = _DirectReader(loop=loop)
            protocol = asyncio.StreamReaderProtocol(direct, loop=loop)
            sock_transport, _ = await loop.create_connection(
                lambda: protocol, self.host, self.port, ssl=self.tls,
                server_hostname=(self.server_name or self.host) if self.tls else None)
            writer = asyncio.StreamWriter(sock_transport, protocol, direct, loop)
            # The handshake's key agreement only once the socket is open: thousands of nodes
            # retrying while a server restarts spent most of their CPU on refused attempts.
            init = Initiator(self.machine_private, server_public, self.version, keys.new_private())
            hs = base64.b64encode(init.initiation()).decode()
            writer.write(
                f"POST /ts2021 HTTP/1.1\r\nHost: {self.host}\r\nUpgrade: tailscale-control-protocol\r\n"
                f"Connection: upgrade\r\nX-Tailscale-Handshake: {hs}\r\n\r\n".encode()
            )
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 101"):
                writer.close()
                status_line = head.split(b"\r\n", 1)[0]
                raise ConnectionError(f"upgrade refused: {status_line!r}")
        hdr = await reader.readexactly(3)
        rest = await reader.readexactly(reply_size(hdr) - 3)
        self.transport = init.finish(hdr + rest)
        self.writer = writer
        cfg = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        self.conn = h2.connection.H2Connection(config=cfg)
        self.conn.local_settings = h2.settings.Settings(
            client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: WINDOW})
        self.conn.initiate_connection()
        self.conn.increment_flow_control_window(WINDOW)
        self.inbound = Inbound(self.conn)
        self._flush()
        if direct is not None:
            # From here on the socket's bytes are handled as they arrive, in the event loop's
            # callback: no reader task to wake per message.
            direct.divert(self._on_bytes, self._on_closed)
        else:
            self._reader_task = asyncio.create_task(self._read_loop(reader))

    def _flush(self) -> None:
        assert self.conn is not None and self.transport is not None and self.writer is not None
        data = self.inbound.data_to_send() if self.inbound is not None else self.conn.data_to_send()
        if data:
            self.writer.write(self.transport.encrypt(data))

    async def _read_loop(self, reader: Any) -> None:
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                self._on_bytes(data)
        except (ConnectionError, OSError):
            pass
        finally:
            self._on_closed()

    def _on_bytes(self, data: bytes) -> None:
        """Bytes from the server: Noise records -> early payload, then HTTP/2."""
        assert self.inbound is not None and self.transport is not None
        plain = b"".join(self.transport.receive_data(data))
        if self._pending_early is not None:
            self._pending_early += plain
            split = split_early_payload(self._pending_early)
            if split is None:
                return
            self.early, plain = split
            self._pending_early = None
        if not plain:
            return
        streams = self.streams
        for item in self.inbound.receive(plain):
            if item.__class__ is Data:
                s = streams.get(item.stream_id)   # type: ignore[attr-defined]
                if s is not None:
                    s.data.put_nowait(item.data)   # type: ignore[attr-defined]
            else:
                self._on_event(item)
        self._flush()

    def _on_closed(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        if self.writer is not None:
            self.writer.close()
        for s in self.streams.values():
            s.headers_ready.set()
            s.data.put_nowait(None)

    def _on_event(self, ev: Any) -> None:
        assert self.conn is not None
        if isinstance(ev, h2.events.ResponseReceived):
            s = self.streams.get(ev.stream_id)
            if s is not None:
                s.status = int(dict(ev.headers)[":status"])
                s.headers_ready.set()
        elif isinstance(ev, h2.events.DataReceived):
            self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            s = self.streams.get(ev.stream_id)
            if s is not None:
                s.data.put_nowait(ev.data)
        elif isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset)):
            if self.inbound is not None:
                self.inbound.forget(ev.stream_id)
            s = self.streams.get(ev.stream_id)
            if s is not None:
                s.headers_ready.set()
                s.data.put_nowait(None)

    async def _start(self, method: str, path: str, body: bytes) -> tuple[int, StreamState]:
        assert self.conn is not None and self.writer is not None
        sid = self.conn.get_next_available_stream_id()
        st = self.streams[sid] = StreamState()
        self.conn.send_headers(sid, [
            (":method", method), (":path", path), (":scheme", "https"), (":authority", self.host),
            ("content-type", "application/json"), ("ts-lb", self.node_key),
        ], end_stream=not body)
        if body:
            self.conn.send_data(sid, body, end_stream=True)
        self._flush()
        await self.writer.drain()
        await st.headers_ready.wait()
        return sid, st

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        raw = json.dumps(body).encode() if body is not None else b""
        sid, st = await self._start(method, path, raw)
        chunks = []
        while True:
            c = await st.data.get()
            if c is None:
                break
            chunks.append(c)
        self.streams.pop(sid, None)
        return st.status or 0, b"".join(chunks)

    async def register(self, auth_key: str | None = None, **extra: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"Version": self.version, "NodeKey": self.node_key,
                                "Hostinfo": extra.pop("hostinfo", {"Hostname": "pynode"})}
        if auth_key:
            body["Auth"] = {"AuthKey": auth_key}
        body.update(extra)
        status, data = await self.request("POST", "/machine/register", body)
        if status != 200:
            raise RuntimeError(f"register: http {status}: {data[:200]!r}")
        return json.loads(data)

    async def answer_ping(self, ping: dict[str, Any]) -> int:
        """Answer a PingRequest as tailscaled does for a plain liveness ping (``Types`` empty,
        ``URLIsNoise``): ``HEAD`` its URL over this Noise connection. Returns the HTTP status."""
        url = str(ping.get("URL") or "")
        path = "/" + url.split("://", 1)[-1].partition("/")[2]
        status, _ = await self.request("HEAD", path)
        return status

    def map_request(self, **extra: Any) -> dict[str, Any]:
        body = {"Version": self.version, "NodeKey": self.node_key, "DiscoKey": self.disco_key,
                "Compress": "zstd", "KeepAlive": True}
        body.update(extra)
        return body

    async def lite_update(self, **extra: Any) -> int:
        status, _ = await self.request("POST", "/machine/map", self.map_request(Stream=False, OmitPeers=True, **extra))
        return status

    async def map_stream(self, **extra: Any) -> AsyncIterator[dict[str, Any]]:
        body = json.dumps(self.map_request(Stream=True, **extra)).encode()
        sid, st = await self._start("POST", "/machine/map", body)
        if st.status != 200:
            raise RuntimeError(f"map: http {st.status}")
        frames = FrameReader()
        try:
            while True:
                c = await st.data.get()
                if c is None:
                    return
                for msg in frames.receive_data(c):
                    yield msg
        finally:
            self.cancel_stream(sid)

    async def map_frames(self, **extra: Any) -> AsyncIterator[bytes]:
        """Like ``map_stream`` but yields each message's body still compressed: the load
        generator in bench/ decodes only the messages it inspects."""
        body = json.dumps(self.map_request(Stream=True, **extra)).encode()
        sid, st = await self._start("POST", "/machine/map", body)
        if st.status != 200:
            raise RuntimeError(f"map: http {st.status}")
        messages = MessageSplitter()
        try:
            while True:
                c = await st.data.get()
                if c is None:
                    return
                for msg in messages.feed(c):
                    yield msg
        finally:
            self.cancel_stream(sid)

    def cancel_stream(self, sid: int) -> None:
        if self.conn is None or self.closed.is_set():
            return
        # The stream may already be closed by the server, or the connection gone.
        with contextlib.suppress(h2.exceptions.H2Error, OSError, RuntimeError):
            self.conn.reset_stream(sid)
            self._flush()
        self.streams.pop(sid, None)
        if self.inbound is not None:
            self.inbound.forget(sid)

    async def close(self) -> None:
        if self._reader_task is not None:
            self._reader_task.cancel()
        if self.writer is not None:
            self.writer.close()
