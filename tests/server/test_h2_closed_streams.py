"""A node's Noise connection lives for days and every map request is a new HTTP/2 stream: the
server must not remember every closed stream (h2's default is 65,536 per connection, which the
soak in bench/soak.py saw as RSS growing with every endpoint update)."""

from __future__ import annotations

import asyncio

import h2.config
import h2.connection
import h2.events

from app.server.h2server import H2Server


async def test_a_long_lived_connection_forgets_old_closed_streams():
    out = bytearray()

    async def drain() -> None:
        return None

    async def handler(req, resp) -> None:
        await resp.simple(200, b"ok")

    srv = H2Server(out.extend, drain, handler)
    await srv.start()
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    answered = 0

    async def exchange() -> None:
        nonlocal answered
        await srv.receive(client.data_to_send())
        while srv.tasks:
            await asyncio.sleep(0)
        events = client.receive_data(bytes(out))
        out.clear()
        answered += sum(1 for e in events if isinstance(e, h2.events.StreamEnded))

    await exchange()
    for _ in range(600):
        sid = client.get_next_available_stream_id()
        client.send_headers(sid, [(":method", "POST"), (":path", "/machine/map"), (":scheme", "http"),
                                  (":authority", "localhost")], end_stream=True)
        await exchange()
    assert answered == 600
    assert len(srv.conn._closed_streams) <= 16
    # and the connection goes on serving new requests
    sid = client.get_next_available_stream_id()
    client.send_headers(sid, [(":method", "POST"), (":path", "/machine/map"), (":scheme", "http"),
                              (":authority", "localhost")], end_stream=True)
    await exchange()
    assert answered == 601
