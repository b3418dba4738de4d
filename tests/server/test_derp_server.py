"""DerpServer over loopback sockets, driven by tests/derp_client.py (tier b)."""

import asyncio
import datetime
import ipaddress
import socket
import ssl
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

# tests/server has no __init__.py, so pytest does not put the repository root on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from app.core.derp import frames
from app.core.derp.frames import ClientInfo, FrameType, PeerGoneReason
from app.server.derp_conn import DerpServer
from tests.derp_client import (
    DerpClient,
    DerpClosed,
    KeepAlive,
    Packet,
    PeerGone,
    read_request_head,
    serve_derp,
)

SERVER_PRIV = bytes(range(1, 33))


def priv(n: int) -> bytes:
    return bytes([n]) * 32


@pytest.fixture
async def start():
    running = []

    async def _start(**kw) -> tuple[DerpServer, int]:
        server = DerpServer(SERVER_PRIV, **kw)
        listener = await serve_derp(server)
        running.append((server, listener))
        return server, listener.sockets[0].getsockname()[1]

    yield _start
    for server, listener in running:
        server.close_all()
        listener.close()
        await listener.wait_closed()


async def until(predicate, timeout: float = 3.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


@pytest.mark.parametrize("ws_a,ws_b", [(False, False), (True, True), (True, False)])
async def test_send_and_receive_between_two_clients(start, ws_a, ws_b):
    server, port = await start()
    a = await DerpClient.connect("127.0.0.1", port, priv(1), websocket=ws_a)
    b = await DerpClient.connect("127.0.0.1", port, priv(2), websocket=ws_b)
    assert a.server_public == server.relay.public_key and a.server_info.version == 2
    await a.send(b.public_key, b"hello b")
    assert await b.recv_packet() == (a.public_key, b"hello b")
    big = bytes(range(256)) * 256  # 64 KiB, the largest packet
    await b.send(a.public_key, big)
    assert await a.recv_packet() == (b.public_key, big)
    assert server.clients_connected == 2 and server.packets_relayed == 2
    assert server.stats()["websocket_accepts"] == ws_a + ws_b
    await a.close()
    await b.close()


async def test_101_response_is_exactly_what_clients_expect(start):
    server, port = await start()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /derp HTTP/1.1\r\nHost: x\r\nUpgrade: DERP\r\nConnection: Upgrade\r\n\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    assert head == (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: DERP\r\nConnection: Upgrade\r\n"
        b"Derp-Version: 2\r\nDerp-Public-Key: " + server.relay.public_key.hex().encode() + b"\r\n\r\n"
    )
    greeting = await reader.readexactly(45)
    assert greeting == frames.server_key(server.relay.public_key)
    assert server.public_key == "nodekey:" + server.relay.public_key.hex()
    writer.close()


async def test_fast_start_skips_the_101(start):
    server, port = await start()
    c = await DerpClient.connect(
        "127.0.0.1", port, priv(1), fast_start=True, server_public=server.relay.public_key
    )
    b = await DerpClient.connect("127.0.0.1", port, priv(2))
    await b.send(c.public_key, b"fast")
    assert await c.recv_packet() == (b.public_key, b"fast")


async def test_non_upgrade_request_gets_426_and_probe_gets_200(start):
    _, port = await start()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /derp HTTP/1.1\r\nHost: x\r\n\r\n")
    response = await reader.read()
    assert response.startswith(b"HTTP/1.1 426 Upgrade Required\r\n")
    assert response.endswith(b"DERP requires connection upgrade\n")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /derp/probe HTTP/1.1\r\nHost: x\r\n\r\n")
    response = await reader.read()
    assert response.startswith(b"HTTP/1.1 200 OK\r\n") and b"Access-Control-Allow-Origin: *" in response


async def test_peer_gone_when_a_sender_disconnects(start):
    server, port = await start()
    a = await DerpClient.connect("127.0.0.1", port, priv(1))
    b = await DerpClient.connect("127.0.0.1", port, priv(2))
    await a.send(b.public_key, b"x")
    await b.recv_packet()
    a.abort()
    assert await b.recv() == PeerGone(a.public_key, PeerGoneReason.DISCONNECTED)
    await until(lambda: server.clients_connected == 1)


async def test_peer_gone_not_here_for_disco_to_absent_peer(start):
    _, port = await start()
    a = await DerpClient.connect("127.0.0.1", port, priv(1))
    absent = priv(99)
    await a.send(absent, frames.DISCO_MAGIC + bytes(60))
    assert await a.recv() == PeerGone(absent, PeerGoneReason.NOT_HERE)


async def test_second_connection_with_same_key_replaces_the_first(start):
    server, port = await start()
    a1 = await DerpClient.connect("127.0.0.1", port, priv(1))
    b = await DerpClient.connect("127.0.0.1", port, priv(2))
    a2 = await DerpClient.connect("127.0.0.1", port, priv(1))
    await b.send(a1.public_key, b"for the newest")
    assert await a2.recv_packet() == (b.public_key, b"for the newest")
    with pytest.raises(TimeoutError):
        await a1.recv_packet(timeout=0.2)
    await a2.close()
    await until(lambda: server.clients_connected == 2)
    await b.send(a1.public_key, b"for the remaining one")
    assert await a1.recv_packet() == (b.public_key, b"for the remaining one")


async def test_verify_refusal_closes_at_client_info(start):
    asked = []

    async def verify(node_key: str) -> bool:
        asked.append(node_key)
        return node_key.endswith(priv(2).hex()) or node_key == "nodekey:" + _pub(2).hex()

    server, port = await start(verify=verify)
    with pytest.raises(DerpClosed):
        await DerpClient.connect("127.0.0.1", port, priv(1))
    ok = await DerpClient.connect("127.0.0.1", port, priv(2))
    assert asked == ["nodekey:" + _pub(1).hex(), "nodekey:" + _pub(2).hex()]
    assert server.stats()["clients_refused"] == 1 and server.clients_connected == 1
    assert await ok.ping() > 0


async def test_verify_hook_errors_refuse(start):
    async def broken(node_key: str) -> bool:
        raise RuntimeError("database down")

    server, port = await start(verify=broken)
    with pytest.raises(DerpClosed):
        await DerpClient.connect("127.0.0.1", port, priv(1))
    assert server.stats()["clients_refused"] == 1


async def test_handshake_timeout(start):
    server, port = await start(handshake_timeout=0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /derp HTTP/1.1\r\nHost: x\r\nUpgrade: DERP\r\nConnection: Upgrade\r\n\r\n")
    data = await asyncio.wait_for(reader.read(), 3)  # 101 + ServerKey, then closed
    assert data.startswith(b"HTTP/1.1 101") and data.endswith(frames.server_key(server.relay.public_key))
    assert server.stats()["handshake_timeouts"] == 1


async def test_keepalives(start):
    _, port = await start(keepalive=0.05, keepalive_jitter=0.0)
    a = await DerpClient.connect("127.0.0.1", port, priv(1))
    assert await a.recv(timeout=2) == KeepAlive()
    assert await a.recv(timeout=2) == KeepAlive()


async def test_close_client_disconnects_node_and_tells_its_peers(start):
    server, port = await start()
    a = await DerpClient.connect("127.0.0.1", port, priv(1))
    b = await DerpClient.connect("127.0.0.1", port, priv(2))
    await a.send(b.public_key, b"x")
    await b.recv_packet()
    assert server.close_client(a.node_key) == 1
    assert server.close_client("nodekey:" + "00" * 32) == 0
    assert server.close_client("garbage") == 0
    await a.expect_closed()
    assert await b.recv() == PeerGone(a.public_key, PeerGoneReason.DISCONNECTED)


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x04" + (32 + (64 << 10) + 1).to_bytes(4, "big"),  # oversized SendPacket
        b"\x7f" + (2 << 20).to_bytes(4, "big"),  # oversized unknown frame
        frames.encode_frame(FrameType.NOTE_PREFERRED, b"\x01\x02"),
        frames.encode_frame(FrameType.SEND_PACKET, b"short"),
        frames.WATCH_CONNS_FRAME,  # mesh-only
    ],
)
async def test_bad_frames_drop_only_that_connection(start, garbage):
    server, port = await start()
    bad = await DerpClient.connect("127.0.0.1", port, priv(1))
    a = await DerpClient.connect("127.0.0.1", port, priv(2))
    b = await DerpClient.connect("127.0.0.1", port, priv(3))
    await bad.send_raw(garbage)
    await bad.expect_closed()
    await a.send(b.public_key, b"unaffected")
    assert await b.recv_packet() == (a.public_key, b"unaffected")
    assert server.stats()["protocol_errors"] == 1


@pytest.mark.parametrize(
    "first",
    [b"GET / HTTP/1.1\r\n\r\n", frames.send_packet(b"\x01" * 32, b"x"), b"\x02\x00\x00\x00\x38" + bytes(56)],
)
async def test_garbage_instead_of_client_info_is_dropped(start, first):
    server, port = await start()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /derp HTTP/1.1\r\nHost: x\r\nUpgrade: DERP\r\nConnection: Upgrade\r\n\r\n" + first)
    try:
        data = await asyncio.wait_for(reader.read(), 3)  # the server hangs up
    except ConnectionResetError:
        data = b""
    assert b"\x03\x00\x00" not in data.split(b"\r\n\r\n", 1)[-1][45:]  # never a ServerInfo
    assert server.clients_connected == 0 and sum(server.relay.stats.closed.values()) == 1


async def test_unknown_frames_are_skipped(start):
    _, port = await start()
    a = await DerpClient.connect("127.0.0.1", port, priv(1))
    b = await DerpClient.connect("127.0.0.1", port, priv(2))
    await a.send_raw(b"\x0f\x00\x00\x00\x04abcd" + frames.encode_frame(0x7E, bytes(70000)))
    await a.send(b.public_key, b"after unknown")
    assert await b.recv_packet() == (a.public_key, b"after unknown")


async def test_ping_pong_and_note_preferred(start):
    server, port = await start()
    a = await DerpClient.connect("127.0.0.1", port, priv(1))
    await a.note_preferred(True)
    assert await a.ping(b"12345678") >= 0
    assert server.stats()["home_clients"] == 1


async def test_mesh_watcher_over_sockets(start):
    mesh = b"\x42" * 32
    _, port = await start(mesh_key=mesh)
    a = await DerpClient.connect("127.0.0.1", port, priv(1))
    w = await DerpClient.connect("127.0.0.1", port, priv(50), info=ClientInfo(mesh_key=mesh))
    await w.watch_conns()
    seen = {(await w.recv()).peer for _ in range(2)}
    assert seen == {a.public_key, w.public_key}
    a.abort()
    assert await w.recv() == PeerGone(a.public_key, PeerGoneReason.DISCONNECTED)


def _slow_socket(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # keep kernel buffering small
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


async def _flood(sender: DerpClient, dst: bytes, count: int) -> None:
    packet = bytes(1200)
    for i in range(count):
        sender.send_nowait(dst, packet)
        if i % 64 == 0:
            await sender.writer.drain()
    await sender.writer.drain()


async def test_slow_reader_does_not_block_others_and_memory_stays_bounded(start):
    server, port = await start(write_timeout=None, queue_frames=64, queue_bytes=256 << 10)
    slow = await DerpClient.connect("127.0.0.1", port, priv(1), sock=_slow_socket(port))
    slow.reader._limit = 1024  # our side buffers little, so the server's socket fills
    flooder = await DerpClient.connect("127.0.0.1", port, priv(2))
    a = await DerpClient.connect("127.0.0.1", port, priv(3))
    b = await DerpClient.connect("127.0.0.1", port, priv(4))
    flood = asyncio.create_task(_flood(flooder, slow.public_key, 20000))  # ~24 MB at a non-reader
    peak = 0
    for i in range(200):
        await a.send(b.public_key, i.to_bytes(4, "big"))
        assert await b.recv_packet(timeout=2) == (a.public_key, i.to_bytes(4, "big"))
        peak = max(peak, server.buffered_bytes())
    await asyncio.wait_for(flood, 20)
    peak = max(peak, server.buffered_bytes())
    assert server.stats()["packets_dropped_queue_full"] > 0
    assert peak < 3 << 20  # queue bound (256 KiB) + one write batch + socket buffer high-water
    slow.abort()


async def test_slow_reader_is_dropped_after_write_timeout(start):
    server, port = await start(write_timeout=0.3)
    slow = await DerpClient.connect("127.0.0.1", port, priv(1), sock=_slow_socket(port))
    slow.reader._limit = 1024
    flooder = await DerpClient.connect("127.0.0.1", port, priv(2))
    flood = asyncio.create_task(_flood(flooder, slow.public_key, 20000))
    await until(lambda: server.stats()["write_timeouts"] == 1, timeout=10)
    await flood
    await until(lambda: server.clients_connected == 1)
    assert await flooder.ping() > 0


async def test_request_head_helper_lowercases_names():
    reader = asyncio.StreamReader()
    reader.feed_data(b"GET /derp HTTP/1.1\r\nUpgrade: DERP\r\nDerp-Fast-Start: 1\r\n\r\n")
    assert await read_request_head(reader) == ("GET", "/derp", {"upgrade": "DERP", "derp-fast-start": "1"})


def _pub(n: int) -> bytes:
    return frames.public_key_of(priv(n))


def test_packet_type_is_importable():  # the bench and other tests use these names
    assert Packet(b"k", b"d").data == b"d"


def _tls_contexts(tmp_path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A throwaway self-signed certificate for 127.0.0.1 (real clients always use TLS)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "derp.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .sign(key, hashes.SHA256())
    )
    cert_pem = tmp_path / "cert.pem"
    key_pem = tmp_path / "key.pem"
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert_pem, key_pem)
    client_ctx = ssl.create_default_context(cafile=str(cert_pem))
    return server_ctx, client_ctx


@pytest.mark.parametrize("websocket", [False, True])
async def test_relay_over_tls(tmp_path, websocket):
    server_ctx, client_ctx = _tls_contexts(tmp_path)
    server = DerpServer(SERVER_PRIV)
    listener = await serve_derp(server, ssl=server_ctx)
    port = listener.sockets[0].getsockname()[1]
    try:
        a = await DerpClient.connect("127.0.0.1", port, priv(1), ssl=client_ctx, websocket=websocket)
        b = await DerpClient.connect("127.0.0.1", port, priv(2), ssl=client_ctx)
        packets = [bytes([i]) * 1200 for i in range(200)]
        a.send_many_nowait(b.public_key, packets)
        got = [(await b.recv_packet())[1] for _ in packets]
        assert got == packets
        a.abort()
        assert await b.recv() == PeerGone(a.public_key, PeerGoneReason.DISCONNECTED)
    finally:
        server.close_all()
        listener.close()
        await listener.wait_closed()
