"""``POST /ts2021``: the Noise upgrade, then HTTP/2 over the Noise stream (PROTOCOL.md 2).

    client                                  server
    POST /ts2021 (Upgrade, X-Tailscale-Handshake: b64 initiation)
                  <- 101 Switching Protocols + 51-byte Noise response + early payload record
    HTTP/2 preface and frames, inside Noise transport records, both ways

Errors before the 101 get a plain HTTP 400; a broken Noise record or HTTP/2 frame closes
only this connection.
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
from app.server.edge import RequestHead, reply
from app.server.h2server import H2Server, Handler

log = logging.getLogger("headscale.noise")

UPGRADE = "tailscale-control-protocol"


class TS2021:
    def __init__(self, noise_private: bytes, routes_for: RoutesFactory) -> None:
        self.responder = Responder(noise_private)
        self.routes_for = routes_for
        self.connections = 0

    @property
    def public_key(self) -> str:
        return keys.format_key(self.responder.public, keys.MACHINE_PUBLIC)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: RequestHead) -> None:
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
            log.info("noise handshake refused: %s", exc.message)
            await reply(writer, 400, "noise handshake failed")
            return
        if result.version < MIN_SUPPORTED_CAPVER:
            log.info("refusing client with capability version %d", result.version)
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

        async def drain() -> None:
            await writer.drain()

        server = H2Server(write, drain, self.routes_for(machine_key, result.version))
        self.connections += 1
        try:
            await server.start()
            while not server.closed:
                data = await reader.read(65536)
                if not data:
                    break
                for plain in transport.receive_data(data):
                    if plain:
                        await server.receive(plain)
        except NoiseError as exc:
            log.info("closing noise connection of %s: %s", keys.short(machine_key), type(exc).__name__)
        except h2.exceptions.ProtocolError as exc:
            log.info("closing noise connection of %s: HTTP/2 error %s", keys.short(machine_key), type(exc).__name__)
        except (ConnectionError, OSError):
            pass
        finally:
            self.connections -= 1
            server.close()
            writer.close()


class RoutesFactory:  # pragma: no cover - typing aid
    def __call__(self, machine_key: str, version: int) -> Handler: ...
