"""Resources a stranger can take without logging in are bounded (issue 11, section 2).

In-process server with short timeouts; each test fails on the code before the limits existed.
"""

from __future__ import annotations

import asyncio
import time

import h2.exceptions
import pytest

from app.config import dev_config
from app.server.serve import build, start, stop
from bench.flood_bench import fill_stream
from tests.server.conftest import Stream, new_client, user_and_key


@pytest.fixture
async def limited(tmp_path):
    cfg = dev_config(str(tmp_path), overrides={
        "listen_addr": "127.0.0.1:0",
        "metrics_listen_addr": "",
        "tuning.batch_change_delay": "20ms",
        "tuning.noise_idle_timeout": "1s",
        "tuning.http_idle_timeout": "30s",
        "tuning.request_head_timeout": "2s",
        "tuning.max_connections_per_source": 20,
        "tuning.noise_max_streams": 10,
    })
    services = await build(cfg)
    await start(services)
    try:
        yield services
    finally:
        await stop(services)


def _admission(services):
    return services.edges[0].admission


async def _wait_for(pred, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        await asyncio.sleep(0.05)
    return pred()


async def _health(port: int, source: str, keep_alive: bool = False):
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    conn = "keep-alive" if keep_alive else "close"
    writer.write(f"GET /health HTTP/1.1\r\nHost: x\r\nConnection: {conn}\r\n\r\n".encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    return head, reader, writer


async def test_plain_http_connection_is_released_when_the_peer_closes(limited):
    port = limited.addresses["listen"][1]
    head, _reader, writer = await _health(port, "127.0.0.1", keep_alive=True)
    assert b" 200 " in head
    assert _admission(limited).total == 1
    writer.close()
    # Before: hypercorn's keep-alive timer held the socket in CLOSE-WAIT for the whole timeout.
    assert await _wait_for(lambda: _admission(limited).total == 0, 3.0)


async def test_a_silent_connection_is_closed_after_the_head_timeout(limited):
    port = limited.addresses["listen"][1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    t0 = time.monotonic()
    assert await asyncio.wait_for(reader.read(), 10) == b""
    assert 1.5 < time.monotonic() - t0 < 6
    writer.close()


async def test_one_source_cannot_hold_more_than_its_share_and_others_still_get_answers(limited):
    port = limited.addresses["listen"][1]
    held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(60)]
    await asyncio.sleep(0.3)
    assert _admission(limited).total == 20
    closed = sum(1 for r, _ in held if r.at_eof() or r.exception() is not None)
    assert closed == 40
    t0 = time.monotonic()
    head, _, w = await _health(port, "127.0.0.2")
    assert b" 200 " in head and time.monotonic() - t0 < 1.0
    w.close()
    for _, w in held:
        w.close()
    assert await _wait_for(lambda: _admission(limited).total == 0, 3.0)


async def test_handshaken_noise_connection_that_says_nothing_is_closed(limited):
    c = await new_client(limited)
    assert limited.ts2021.connections == 1
    await asyncio.wait_for(c.closed.wait(), 5)
    assert limited.ts2021.idle_closed == 1
    assert await _wait_for(lambda: limited.ts2021.connections == 0, 2)


async def test_map_long_poll_is_not_idle(limited):
    _, key = await user_and_key(limited)
    c = await new_client(limited)
    await c.register(key)
    stream = Stream(c)
    await stream.wait(lambda m: "Node" in m, timeout=5)
    await asyncio.sleep(3.0)   # three idle timeouts
    assert not c.closed.is_set()
    assert limited.ts2021.idle_closed == 0
    await stream.close()


async def test_streams_and_unfinished_request_bytes_per_noise_connection_are_bounded(limited):
    c = await new_client(limited)
    await asyncio.sleep(0.3)   # the server's SETTINGS have arrived
    assert c.conn.remote_settings.max_concurrent_streams == 10
    sent = 0
    opened = 0
    with pytest.raises(h2.exceptions.TooManyStreamsError):
        for _ in range(50):
            sid = c.conn.get_next_available_stream_id()
            c.conn.send_headers(sid, [(":method", "POST"), (":path", "/machine/map"),
                                      (":scheme", "https"), (":authority", "x")])
            opened += 1
            sent += await fill_stream(c, sid, (1 << 20) - 1, patience=0.05)
    assert opened == 10
    # Credit is returned only when a request is complete: the client could send exactly the
    # 2 MiB connection window (before: every byte was acknowledged at once, 10 x 1 MiB here,
    # 250 MiB with 250 streams). Stalled like this, the connection counts as idle and closes.
    assert (2 << 20) - 65536 <= sent <= 2 << 20
    await asyncio.wait_for(c.closed.wait(), 5)
    c.writer.close()


async def test_derp_connection_that_never_logs_in_is_closed(tmp_path):
    cfg = dev_config(str(tmp_path), overrides={
        "listen_addr": "127.0.0.1:0", "metrics_listen_addr": "",
        "derp.server.enabled": True, "derp.server.stun_listen_addr": "127.0.0.1:0",
        "tuning.derp_login_timeout": "1s",
    })
    services = await build(cfg)
    await start(services)
    try:
        port = services.addresses["listen"][1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /derp HTTP/1.1\r\nHost: x\r\nUpgrade: DERP\r\nConnection: Upgrade\r\n\r\n")
        t0 = time.monotonic()
        data = await asyncio.wait_for(reader.read(), 10)   # 101, ServerKey frame, then EOF
        assert data.startswith(b"HTTP/1.1 101")
        assert time.monotonic() - t0 < 4
        assert services.derp.adapter_stats.handshake_timeouts == 1
        writer.close()
    finally:
        await stop(services)


def test_a_flood_from_one_address_near_the_descriptor_limit_starves_no_one(tmp_path):
    """The probe's case, scaled: a process with 300 descriptors, 400 idle connections from one
    address (before: /health from elsewhere failed or took seconds, descriptors ran out)."""
    import socket

    from tests.procserver import ServerProc

    srv = ServerProc(str(tmp_path), {"tuning.max_connections_per_source": 100}, nofile=300)
    srv.start()
    held = []
    try:
        base = srv.fds()
        for _ in range(400):
            try:
                held.append(socket.create_connection(("127.0.0.1", srv.port), timeout=5))
            except OSError:
                break
        time.sleep(0.5)
        assert srv.fds() <= base + 100 + 5
        for _ in range(5):
            t0 = time.monotonic()
            with socket.create_connection(("127.0.0.1", srv.port), timeout=5,
                                          source_address=("127.0.0.2", 0)) as s:
                s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                assert b" 200 " in s.recv(200).split(b"\r\n", 1)[0]
            assert time.monotonic() - t0 < 1.0
        for s in held:
            s.close()
        held.clear()
        deadline = time.monotonic() + 5
        while srv.fds() > base and time.monotonic() < deadline:
            time.sleep(0.1)
        assert srv.fds() <= base
        assert "Traceback" not in srv.log_tail(100_000)
    finally:
        for s in held:
            s.close()
        srv.stop()


async def test_a_client_ignoring_the_stream_limit_is_disconnected(limited):
    import collections

    import h2.settings

    c = await new_client(limited)
    await asyncio.sleep(0.3)
    # Pretend the server allowed 1,000 streams (what a hostile client does).
    c.conn.remote_settings._settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] = collections.deque([1000])
    for _ in range(11):
        sid = c.conn.get_next_available_stream_id()
        c.conn.send_headers(sid, [(":method", "POST"), (":path", "/machine/map"),
                                  (":scheme", "https"), (":authority", "x")])
    c._flush()
    await c.writer.drain()
    await asyncio.wait_for(c.closed.wait(), 5)
    assert await _wait_for(lambda: limited.ts2021.connections == 0, 2)


async def test_a_tls_handshake_that_never_comes_is_cut_at_the_head_timeout(tmp_path):
    from tests.e2e.certs import make_ca_and_cert

    _, cert, key = make_ca_and_cert(tmp_path / "tls", "127.0.0.1")
    cfg = dev_config(str(tmp_path), overrides={
        "listen_addr": "127.0.0.1:0", "metrics_listen_addr": "", "server_url": "https://127.0.0.1:8443",
        "tls_cert_path": str(cert), "tls_key_path": str(key), "tuning.request_head_timeout": "1s"})
    services = await build(cfg)
    await start(services)
    try:
        reader, writer = await asyncio.open_connection(*services.addresses["listen"])
        t0 = time.monotonic()
        assert await asyncio.wait_for(reader.read(), 10) == b""   # not a byte of ClientHello
        assert time.monotonic() - t0 < 4      # asyncio's own default would be 60 s
        writer.close()
    finally:
        await stop(services)
