"""TS2021 over WebSocket (GET /ts2021, as Tailscale's JS/WASM client): our client registers and
streams maps through it; broken upgrades and garbage frames get clean answers."""

from __future__ import annotations

import asyncio
import base64
import logging
from urllib.parse import urlencode

from wsproto.events import TextMessage

from app.client.control import ControlClient, fetch_key
from app.client.wsclient import open_websocket
from app.core import keys
from app.core.noise import Initiator
from tests.server.conftest import Stream, user_and_key

SUB = "tailscale-control-protocol"


async def test_register_and_map_over_websocket(server):
    _, key = await user_and_key(server)
    host, port = server.addresses["listen"]
    ws_client = ControlClient(host, port, websocket=True)
    await ws_client.connect()
    resp = await ws_client.register(key, hostinfo={"Hostname": "browser"})
    assert resp["MachineAuthorized"] is True
    assert ws_client.early is not None and ws_client.early.node_key_challenge   # early payload came too
    plain = ControlClient(host, port)
    await plain.connect()
    await plain.register(key, hostinfo={"Hostname": "native"})
    s = Stream(ws_client, Hostinfo={"Hostname": "browser"})
    first = await s.wait(lambda m: "Node" in m)
    assert first["Node"]["Name"].startswith("browser.")
    # A delta reaches the WebSocket session: the native node comes online as a peer.
    sp = Stream(plain, Hostinfo={"Hostname": "native"})
    await sp.wait(lambda m: "Node" in m)
    m = await s.wait(lambda m: any(p["Name"].startswith("native.") for p in m.get("PeersChanged", [])
                                   + m.get("Peers", [])))
    assert m
    await s.close()
    await sp.close()
    await ws_client.close()
    await plain.close()


async def _raw_get(addr, head: str) -> bytes:
    reader, writer = await asyncio.open_connection(*addr)
    writer.write(head.encode())
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return data


async def test_bad_websocket_upgrades_get_http_400(server):
    addr = server.addresses["listen"]
    base = ("GET /ts2021{q} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n")
    no_sub = await _raw_get(addr, base.format(q="?X-Tailscale-Handshake=AAAA", extra=""))
    assert no_sub.startswith(b"HTTP/1.1 400") and b"subprotocol" in no_sub
    no_param = await _raw_get(addr, base.format(q="", extra=f"Sec-WebSocket-Protocol: {SUB}\r\n"))
    assert no_param.startswith(b"HTTP/1.1 400") and b"X-Tailscale-Handshake" in no_param
    bad_noise = await _raw_get(addr, base.format(q="?" + urlencode({"X-Tailscale-Handshake": "AAAA"}),
                                                 extra=f"Sec-WebSocket-Protocol: {SUB}\r\n"))
    assert bad_noise.startswith(b"HTTP/1.1 400") and b"noise handshake failed" in bad_noise


async def _open_session(server):
    host, port = server.addresses["listen"]
    server_public = await fetch_key(host, port)
    init = Initiator(keys.new_private(), server_public, 130, keys.new_private())
    hs = base64.b64encode(init.initiation()).decode()
    reader, writer = await open_websocket(host, port, "/ts2021?" + urlencode({"X-Tailscale-Handshake": hs}), SUB)
    response = await reader.readexactly(51)
    init.finish(response)
    return reader, writer


async def test_garbage_frame_gets_a_close_and_a_log_line(server, caplog):
    caplog.set_level(logging.INFO, logger="headscale.websocket")
    reader, writer = await _open_session(server)
    # An unmasked frame with a reserved opcode: RFC 6455 says fail the connection.
    writer.write_raw(b"\x83\x03abc")
    await writer.drain()
    while await asyncio.wait_for(reader.read(), 10):
        pass
    assert reader.close_code == 1002
    assert any("closing WebSocket" in r.getMessage() for r in caplog.records)
    writer.close()
    # The server goes on serving others.
    _, key = await user_and_key(server)
    c = ControlClient(*server.addresses["listen"], websocket=True)
    await c.connect()
    assert (await c.register(key))["MachineAuthorized"] is True
    await c.close()


async def test_text_message_is_refused_with_1003(server):
    reader, writer = await _open_session(server)
    writer.write_raw(writer.ws.send(TextMessage(data="hello")))
    await writer.drain()
    while await asyncio.wait_for(reader.read(), 10):
        pass
    assert reader.close_code == 1003
    writer.close()
