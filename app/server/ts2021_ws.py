"""TS2021 over WebSocket: ``GET /ts2021`` as Tailscale's JS/WASM client sends it.

A browser cannot set request headers on a WebSocket, so Tailscale's ``controlhttp`` (client_js.go)
puts the Noise initiation in the query and names the protocol as the WebSocket subprotocol::

    GET /ts2021?X-Tailscale-Handshake=<std base64 of the initiation> HTTP/1.1
    Upgrade: websocket
    Sec-WebSocket-Protocol: tailscale-control-protocol

    <- 101 Switching Protocols, Sec-WebSocket-Protocol: tailscale-control-protocol
    then binary messages carry exactly the bytes of the plain upgrade after its 101: the Noise
    response, the early payload, HTTP/2 inside Noise records (message boundaries mean nothing).

headscale 0.29.2 serves it through Tailscale's controlhttpserver; here the WebSocket is only a
different pipe for the same session: the request is handed to ``TS2021.handle`` as the
equivalent ``POST /ts2021`` upgrade, reading and writing through WebSocket adapters.
Problems found before the 101 (no subprotocol, no handshake parameter, a refused Noise
handshake) are plain HTTP 400 answers, as for the POST form.
"""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs

from app.server.clientaddr import peer_address
from app.server.edge import Handler, RequestHead, reply
from app.server.wsstream import WSReader, WSWriter, parse_upgrade

UPGRADE = "tailscale-control-protocol"
HANDSHAKE = "X-Tailscale-Handshake"


def with_websocket(handle: Handler) -> Handler:
    """The /ts2021 upgrade handler: WebSocket upgrades through the adapters, the rest as is."""

    async def dispatch(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: RequestHead) -> None:
        if head.header("upgrade").lower() == "websocket":
            await handle_websocket(handle, reader, writer, head)
        else:
            await handle(reader, writer, head)

    return dispatch


async def handle_websocket(handle: Handler, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                           head: RequestHead) -> None:
    parsed = parse_upgrade(head)
    if parsed is None or UPGRADE not in parsed[1].subprotocols:
        await reply(writer, 400, f"bad WebSocket upgrade: subprotocol {UPGRADE} required")
        return
    ws, _ = parsed
    values = parse_qs(head.query).get(HANDSHAKE, [])
    if not values or not values[0]:
        await reply(writer, 400, f"missing {HANDSHAKE} query parameter")
        return
    headers = dict(head.headers)
    headers["upgrade"] = UPGRADE
    headers["x-tailscale-handshake"] = values[0]
    inner = RequestHead("POST", head.path, "", head.version, headers, head.raw)
    who = peer_address(writer.get_extra_info("peername"), head.headers)
    await handle(WSReader(reader, ws, writer, who), _AcceptOnSwitch(writer, ws), inner)


class _AcceptOnSwitch(WSWriter):
    """The session handler's first write is either its ``101 Switching Protocols`` (then the
    WebSocket is accepted and what follows the HTTP head goes out as a binary message) or an
    HTTP error reply to the upgrade (written to the socket as it is)."""

    def __init__(self, writer: asyncio.StreamWriter, ws) -> None:
        super().__init__(writer, ws)
        self._first = True
        self._plain = False

    def write(self, data: bytes) -> None:
        if self._first:
            self._first = False
            if data.startswith(b"HTTP/1.1 101"):
                _, _, rest = data.partition(b"\r\n\r\n")
                self.accept(UPGRADE)
                super().write(rest)
            else:
                self._plain = True
                self.writer.write(data)
            return
        if self._plain:
            self.writer.write(data)
        else:
            super().write(data)

    def close(self) -> None:
        if self._plain or self._first:
            self.writer.close()
        else:
            super().close()
