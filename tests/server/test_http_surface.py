"""The plain HTTP surface and hostile input at the edge listener."""

from __future__ import annotations

import asyncio
import base64
import json
import struct

import pytest

from app.config import dev_config
from app.core import keys
from app.core.noise import Initiator, reply_size
from app.server.serve import build, start, stop
from tests.server.conftest import new_client, user_and_key


@pytest.fixture
async def server(tmp_path):
    cfg = dev_config(str(tmp_path), overrides={"listen_addr": "127.0.0.1:0", "metrics_listen_addr": "127.0.0.2:0",
                                               "tuning.batch_change_delay": "20ms"})
    services = await build(cfg)
    await start(services)
    yield services
    await stop(services)


async def http(addr, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection(*addr)
    writer.write(raw)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    if headers.get("transfer-encoding") == "chunked":
        out, rest = b"", body
        while rest:
            size, _, rest = rest.partition(b"\r\n")
            n = int(size, 16)
            if n == 0:
                break
            out, rest = out + rest[:n], rest[n + 2:]
        body = out
    return status, headers, body


def get(path: str, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}\r\n".encode()


async def test_key_health_version_robots(server):
    addr = server.addresses["listen"]
    status, _, _ = await http(addr, get("/key"))
    assert status == 400
    status, hdrs, body = await http(addr, get("/key?v=130"))
    assert status == 200 and hdrs["content-type"].startswith("application/json")
    doc = json.loads(body)
    assert doc["publicKey"] == server.ts2021.public_key and doc["publicKey"].startswith("mkey:")
    status, hdrs, body = await http(addr, get("/health"))
    assert status == 200 and json.loads(body) == {"status": "pass"}
    assert hdrs["content-type"] == "application/health+json"
    status, _, body = await http(addr, get("/version"))
    assert status == 200 and "version" in json.loads(body)
    status, _, body = await http(addr, get("/robots.txt"))
    assert status == 200 and b"Disallow: /" in body
    status, hdrs, _ = await http(addr, get("/"))
    assert hdrs["x-frame-options"] == "DENY"


async def test_metrics_listener(server):
    _, key = await user_and_key(server)
    c = await new_client(server)
    await c.register(key, hostinfo={"Hostname": "m"})
    status, _, body = await http(server.addresses["metrics"], get("/metrics"))
    assert status == 200
    text = body.decode()
    ok = [ln for ln in text.splitlines() if ln.startswith('headscale_registrations_total{outcome="ok"}')]
    assert ok and float(ok[0].split()[-1]) >= 1   # a process-wide counter: other tests add to it
    assert "headscale_map_sessions" in text and "process_cpu_seconds_total" in text


async def test_api_needs_an_api_key_on_the_tcp_listener(server):
    addr = server.addresses["listen"]
    status, _, body = await http(addr, get("/api/v1/user"))
    assert status == 401 and json.loads(body)["code"] == 16
    status, _, _ = await http(addr, get("/api/v1/user", "Authorization: Bearer hskey-api-nope-nope\r\n"))
    assert status == 401
    _, full = await server.state.create_api_key(None)
    status, _, body = await http(addr, get("/api/v1/user", f"Authorization: Bearer {full}\r\n"))
    assert status == 200 and json.loads(body) == {"users": []}


async def test_register_page_validates_the_id(server):
    addr = server.addresses["listen"]
    status, _, _ = await http(addr, get("/register/<script>"))
    assert status in (400, 404)
    good = "hskey-authreq-" + "a" * 24
    status, _, body = await http(addr, get(f"/register/{good}"))
    assert status == 200 and good.encode() in body


async def upgrade(addr, header: str | None, upgrade_to: str = "tailscale-control-protocol") -> bytes:
    reader, writer = await asyncio.open_connection(*addr)
    hs = f"X-Tailscale-Handshake: {header}\r\n" if header is not None else ""
    writer.write(f"POST /ts2021 HTTP/1.1\r\nHost: x\r\nUpgrade: {upgrade_to}\r\nConnection: upgrade\r\n{hs}\r\n".encode())
    await writer.drain()
    data = await asyncio.wait_for(reader.read(200), 10)
    writer.close()
    return data


async def test_bad_handshakes_get_400_and_harm_nothing(server):
    addr = server.addresses["listen"]
    assert (await upgrade(addr, None)).startswith(b"HTTP/1.1 400")
    assert (await upgrade(addr, "!!!notbase64")).startswith(b"HTTP/1.1 400")
    assert (await upgrade(addr, base64.b64encode(b"\x00" * 101).decode())).startswith(b"HTTP/1.1 400")
    assert (await upgrade(addr, base64.b64encode(b"short").decode())).startswith(b"HTTP/1.1 400")
    assert (await upgrade(addr, "AAAA", upgrade_to="websocket2")).startswith(b"HTTP/1.1 400")
    # Garbage that is not HTTP at all is closed without a crash.
    reader, writer = await asyncio.open_connection(*addr)
    writer.write(b"\x16\x03\x01garbage\r\n\r\n")
    await writer.drain()
    await asyncio.wait_for(reader.read(), 10)
    writer.close()
    # An old client version is refused.
    init = Initiator(keys.new_private(), keys.parse_key(server.ts2021.public_key, keys.MACHINE_PUBLIC), 90,
                     keys.new_private())
    assert (await upgrade(addr, base64.b64encode(init.initiation()).decode())).startswith(b"HTTP/1.1 400")
    # The server still works.
    _, key = await user_and_key(server)
    c = await new_client(server)
    assert (await c.register(key, hostinfo={"Hostname": "ok"}))["MachineAuthorized"] is True


async def raw_noise(server) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, object]:
    addr = server.addresses["listen"]
    init = Initiator(keys.new_private(), keys.parse_key(server.ts2021.public_key, keys.MACHINE_PUBLIC), 130,
                     keys.new_private())
    reader, writer = await asyncio.open_connection(*addr)
    hs = base64.b64encode(init.initiation()).decode()
    writer.write(f"POST /ts2021 HTTP/1.1\r\nHost: x\r\nUpgrade: tailscale-control-protocol\r\n"
                 f"Connection: upgrade\r\nX-Tailscale-Handshake: {hs}\r\n\r\n".encode())
    await reader.readuntil(b"\r\n\r\n")
    hdr = await reader.readexactly(3)
    transport = init.finish(hdr + await reader.readexactly(reply_size(hdr) - 3))
    return reader, writer, transport


@pytest.mark.parametrize("attack", ["oversized-frame", "wrong-record-type", "bad-ciphertext", "h2-garbage"])
async def test_misbehaving_noise_connection_is_closed_alone(server, attack):
    _, key = await user_and_key(server)
    good = await new_client(server)
    assert (await good.register(key, hostinfo={"Hostname": "good"}))["MachineAuthorized"] is True
    reader, writer, transport = await raw_noise(server)
    if attack == "oversized-frame":
        writer.write(b"\x04" + struct.pack(">H", 5000) + b"\x00" * 5000)
    elif attack == "wrong-record-type":
        writer.write(b"\x07\x00\x10" + b"\x00" * 16)
    elif attack == "bad-ciphertext":
        writer.write(b"\x04\x00\x20" + b"\x01" * 32)
    else:
        writer.write(transport.encrypt(b"this is not an HTTP/2 connection preface at all" * 3))
    await writer.drain()
    rest = await asyncio.wait_for(reader.read(), 10)   # the server closes the connection
    assert reader.at_eof()
    writer.close()
    del rest
    # The other client's connection is unaffected.
    assert await good.lite_update(Endpoints=["192.0.2.1:1"]) == 200
