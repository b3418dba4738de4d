"""The client's inbound HTTP/2 split (app/client/h2inbound.py): plain DATA frames handed over
directly with their flow-control credit returned by us, everything else through h2, in wire
order, whatever the cuts between reads. The far side is a real h2 server connection, which
raises on any flow-control overdraft."""

from __future__ import annotations

import random

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import pytest

from app.client.h2inbound import Data, Inbound

WINDOW = 100_000


def pair(window: int = WINDOW):
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.local_settings = h2.settings.Settings(client=True, initial_values={
        h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
    client.initiate_connection()
    client.increment_flow_control_window(window)
    inbound = Inbound(client)
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    server.initiate_connection()
    server.receive_data(client.data_to_send())
    feed(inbound, server.data_to_send())
    server.receive_data(inbound.data_to_send())
    return client, inbound, server


def feed(inbound: Inbound, data: bytes, seed: int = 0) -> list:
    """Deliver ``data`` in random cuts; all items in order."""
    rnd = random.Random(seed)
    out, pos = [], 0
    while pos < len(data):
        cut = min(len(data), pos + rnd.randint(1, 7000))
        out += inbound.receive(data[pos:cut])
        pos = cut
    return out


def open_stream(client, inbound, server) -> int:
    sid = client.get_next_available_stream_id()
    client.send_headers(sid, [(":method", "POST"), (":path", "/machine/map"), (":scheme", "http"),
                              (":authority", "t")], end_stream=True)
    server.receive_data(inbound.data_to_send())
    server.send_headers(sid, [(":status", "200")])
    return sid


def body_of(items, sid: int) -> bytes:
    out = bytearray()
    for it in items:
        if isinstance(it, (Data, h2.events.DataReceived)) and it.stream_id == sid:
            out += it.data
    return bytes(out)


@pytest.mark.parametrize("seed", range(5))
def test_data_arrives_whole_in_order_with_h2_events_between(seed):
    client, inbound, server = pair(1 << 20)
    sid = open_stream(client, inbound, server)
    rnd = random.Random(seed)
    sent = bytearray()
    for i in range(30):
        chunk = rnd.randbytes(rnd.choice([1, 200, 4000, 16384]))
        server.send_data(sid, chunk)
        sent += chunk
        if i == 10:
            server.ping(b"12345678")
    server.send_data(sid, b"tail", end_stream=True)
    sent += b"tail"
    items = feed(inbound, server.data_to_send(), seed)
    kinds = [type(it).__name__ for it in items]
    assert kinds[0] == "ResponseReceived"
    assert "PingReceived" in kinds
    assert kinds[-1] == "StreamEnded" and kinds[-2] == "DataReceived"   # END_STREAM went through h2
    assert sum(1 for k in kinds if k == "Data") == 30
    assert body_of(items, sid) == bytes(sent)
    # h2 answered the PING in order with our window updates
    acks = server.receive_data(inbound.data_to_send())
    assert any(isinstance(e, h2.events.PingAckReceived) for e in acks)


def test_credit_is_returned_so_a_long_transfer_never_stalls():
    client, inbound, server = pair()
    sid = open_stream(client, inbound, server)
    got = bytearray()
    total = 5 * WINDOW
    rnd = random.Random(1)
    sent = bytearray()
    while len(sent) < total:
        room = server.local_flow_control_window(sid)
        assert room > 0, "the client stopped giving credit"
        while room > 0 and len(sent) < total:
            n = min(room, 16384, total - len(sent))
            chunk = rnd.randbytes(n)
            server.send_data(sid, chunk)      # h2 raises if we overdraw its view of the window
            sent += chunk
            room -= n
        got += body_of(feed(inbound, server.data_to_send()), sid)
        server.receive_data(inbound.data_to_send())
    assert bytes(got) == bytes(sent)
    # credit given back is exactly what was consumed, never more
    assert server.outbound_flow_control_window <= WINDOW + 65535
    assert server.local_flow_control_window(sid) <= WINDOW


def test_data_on_a_reset_stream_goes_to_h2_and_is_not_handed_over():
    client, inbound, server = pair()
    sid = open_stream(client, inbound, server)
    feed(inbound, server.data_to_send())
    client.reset_stream(sid)
    server.send_data(sid, b"late")       # in flight before the server saw the reset
    items = feed(inbound, server.data_to_send())
    assert not any(isinstance(it, Data) for it in items)


def test_padded_data_goes_through_h2():
    client, inbound, server = pair()
    sid = open_stream(client, inbound, server)
    server.send_data(sid, b"padded", pad_length=10)
    items = feed(inbound, server.data_to_send())
    assert [type(it).__name__ for it in items] == ["ResponseReceived", "DataReceived"]
    assert items[1].data == b"padded"


def test_an_oversized_frame_is_refused_by_h2():
    client, inbound, server = pair()
    sid = open_stream(client, inbound, server)
    feed(inbound, server.data_to_send())
    frame = (20000).to_bytes(3, "big") + b"\x00\x00" + sid.to_bytes(4, "big") + bytes(20000)
    with pytest.raises(h2.exceptions.FrameTooLargeError):
        feed(inbound, frame)      # in pieces: h2 judges it once whole, not its payload as frames

