"""``POST /ts2021``: the Noise upgrade, then HTTP/2 over the Noise stream (PROTOCOL.md 2).

    client                                  server
    POST /ts2021 (Upgrade, X-Tailscale-Handshake: b64 initiation)
                  <- 101 Switching Protocols + 51-byte Noise response + early payload record
    HTTP/2 preface and frames, inside Noise transport records, both ways

Errors before the 101 get a plain HTTP 400; a broken Noise record or HTTP/2 frame closes
only this connection. Refusals are logged at most once a minute per source and reason
(app/server/logguard.py). A connection with no request in progress for ``idle_timeout``
(``tuning.noise_idle_timeout``) is closed; an open map long-poll is a request in progress.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging

import h2.exceptions

from app.core import keys
from app.core.noise import HandshakeError, NoiseError, Responder, early_payload
from app.core.tailcfg import MIN_SUPPORTED_CAPVER
from app.server import logguard
from app.server.edge import RequestHead, reply
from app.server.h2server import MAX_STREAMS, H2Server, Handler
from app.server.limits import source_key
from app.server.seal_buffer import SealBuffer

log = logging.getLogger("headscale.noise")

UPGRADE = "tailscale-control-protocol"
IDLE_TIMEOUT = 60.0
WRITE_ROOM = 64 * 1024


class TS2021:
    def __init__(self, noise_private: bytes, routes_for: RoutesFactory, *,
                 idle_timeout: float = IDLE_TIMEOUT, max_streams: int = MAX_STREAMS) -> None:
        self.responder = Responder(noise_private)
        self.routes_for = routes_for
        self.idle_timeout = idle_timeout
        self.max_streams = max_streams
        self.connections = 0
        self.idle_closed = 0
        self.seal_buffer = SealBuffer()     # large writes of every connection are sealed here

    @property
    def public_key(self) -> str:
        return keys.format_key(self.responder.public, keys.MACHINE_PUBLIC)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: RequestHead) -> None:
        source = source_key(writer.get_extra_info("peername"), head)
        upgrade = head.header("upgrade").lower()
        if upgrade != UPGRADE:
            await reply(writer, 400, "unsupported upgrade protocol")
            return
        b64 = head.header("x-tailscale-handshake")
        try:
            initiation = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            await reply(writer, 400, "invalid X-Tailscale-Handshake header")
            return
        try:
            result = self.responder.respond(initiation, keys.new_private())
        except HandshakeError as exc:
            logguard.refused(log, source, f"noise handshake refused: {exc.message}")
            await reply(writer, 400, "noise handshake failed")
            return
        if result.version < MIN_SUPPORTED_CAPVER:
            logguard.refused(log, source, f"refusing client with capability version {result.version}")
            await reply(writer, 400, "client version too old")
            return
        machine_key = keys.format_key(result.machine_public, keys.MACHINE_PUBLIC)
        transport = result.transport
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: " + UPGRADE.encode()
            + b"\r\nConnection: upgrade\r\n\r\n" + result.response
            + transport.encrypt(early_payload(keys.new_private()))
        )

        def write(data: bytes) -> None:
            writer.write(transport.encrypt(data))

        sock = getattr(writer, "transport", None)   # the socket's (also under the WebSocket adapter)
        # A plain socket writer is the transport's write: large writes are sealed into the shared
        # buffer and handed to it. The WebSocket adapter frames what it is given.
        direct = isinstance(writer, asyncio.StreamWriter)

        def write_parts(parts: list[bytes | memoryview]) -> None:
            if direct:
                self.seal_buffer.write(transport, sock, parts)
            else:
                writer.write(transport.encrypt_parts(parts))

        async def drain() -> None:
            await writer.drain()

        def writable() -> bool:
            # below asyncio's default high-water mark: a write now does not need a drain
            return not sock.is_closing() and sock.get_write_buffer_size() < WRITE_ROOM

        server = H2Server(write, drain, self.routes_for(machine_key, result.version), self.max_streams,
                          writable if sock is not None else None, write_parts)
        self.connections += 1
        try:
            await server.start()
            while not server.closed:
                try:
                    async with asyncio.timeout_at(server.last_activity + self.idle_timeout):
                        data = await reader.read(65536)
                except TimeoutError:
                    now = asyncio.get_running_loop().time()
                    if server.tasks:  # a request is being answered (a map long-poll): not idle
                        server.last_activity = now
                        continue
                    if now < server.last_activity + self.idle_timeout:
                        continue  # an answer ended while we waited
                    self.idle_closed += 1
                    log.debug("closing idle noise connection of %s", keys.short(machine_key))
                    break
                if not data:
                    break
                # HTTP/2 is a byte stream: the records of one read are parsed in one go
                plain = b"".join(transport.receive_data(data))
                if plain:
                    await server.receive(plain)
        except NoiseError as exc:
            logguard.refused(log, source, f"closing noise connection: {type(exc).__name__}")
        except h2.exceptions.ProtocolError as exc:
            logguard.refused(log, source, f"closing noise connection: HTTP/2 error {type(exc).__name__}")
        except (ConnectionError, OSError):
            pass
        finally:
            self.connections -= 1
            server.close()
            writer.close()


class RoutesFactory:  # pragma: no cover - typing aid
    def __call__(self, machine_key: str, version: int) -> Handler: ...
