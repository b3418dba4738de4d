"""The server's inbound split (app/server/h2frames.py): WINDOW_UPDATE frames applied beside h2
must leave every window exactly as h2 alone would, and anything h2 must judge reaches it."""

from __future__ import annotations

import random

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import pytest

from app.server.h2frames import PREFACE, Credit, Inbound, Outgoing, data_frames


def server_conn() -> h2.connection.H2Connection:
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    conn.initiate_connection()
    conn.data_to_send()
    return conn


def client_conn() -> h2.connection.H2Connection:
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    return conn


def request(client, end: bool = True) -> int:
    sid = client.get_next_available_stream_id()
    client.send_headers(sid, [(":method", "POST"), (":path", "/machine/map"), (":scheme", "http"),
                              (":authority", "t")], end_stream=end)
    return sid


def window_update(sid: int, increment: int) -> bytes:
    return (4).to_bytes(3, "big") + b"\x08\x00" + sid.to_bytes(4, "big") + increment.to_bytes(4, "big")


def through_split(conn, inbound: Inbound, data: bytes, seed: int = 0) -> tuple[list, list[int]]:
    """Feed ``data`` in random cuts; h2 events and the streams credited directly."""
    rnd = random.Random(seed)
    events, credits, pos = [], [], 0
    while pos < len(data):
        cut = min(len(data), pos + rnd.randint(1, 40))
        for part in inbound.split(data[pos:cut]):
            if isinstance(part, Credit):
                credits.append(part.stream_id)
            else:
                events += conn.receive_data(part)
        pos = cut
    return events, credits


def windows(conn) -> tuple:
    return conn.outbound_flow_control_window, {sid: s.outbound_flow_control_window
                                              for sid, s in conn.streams.items()}


@pytest.mark.parametrize("seed", range(6))
def test_windows_match_h2_alone(seed):
    client = client_conn()
    s1 = request(client)
    s2 = request(client)
    wire = client.data_to_send()
    wire += window_update(0, 1000) + window_update(s1, 5) + window_update(s2, 70_000)
    s3 = request(client)
    wire += client.data_to_send() + window_update(s3, 9)       # credited in the read that opens it
    wire += window_update(0, 1) + window_update(s1, 2**31 - 1)   # stream overflow: h2 resets s1
    wire += window_update(s1, 3)                                 # on the reset stream: h2's to judge
    ours, reference = server_conn(), server_conn()
    events, credits = through_split(ours, Inbound(ours), wire, seed)
    ref_events = reference.receive_data(wire)
    assert windows(ours) == windows(reference)
    assert credits.count(0) == 2 and s1 in credits and s2 in credits and s3 in credits
    # h2 saw the overflow itself and reset the stream, as without the split
    assert any(isinstance(e, h2.events.StreamReset) and e.stream_id == s1 for e in events)
    assert any(isinstance(e, h2.events.StreamReset) and e.stream_id == s1 for e in ref_events)
    assert ours.data_to_send() == reference.data_to_send()


def test_preface_is_passed_through_in_pieces():
    conn = server_conn()
    inbound = Inbound(conn)
    client = client_conn()
    wire = client.data_to_send()
    assert wire.startswith(PREFACE)
    parts = []
    for i in range(0, len(wire), 5):
        parts += list(inbound.split(wire[i:i + 5]))
    assert b"".join(p for p in parts if isinstance(p, bytes)) == wire
    for p in parts:
        conn.receive_data(p)
    assert conn.remote_settings.initial_window_size == client.local_settings.initial_window_size


def test_a_zero_increment_reaches_h2():
    conn = server_conn()
    client = client_conn()
    wire = client.data_to_send() + window_update(0, 0)
    with pytest.raises(h2.exceptions.ProtocolError):
        through_split(conn, Inbound(conn), wire)


def test_connection_window_overflow_reaches_h2():
    conn = server_conn()
    client = client_conn()
    wire = client.data_to_send() + window_update(0, 2**31 - 1)
    with pytest.raises(h2.exceptions.FlowControlError):
        through_split(conn, Inbound(conn), wire)


def test_an_oversized_frame_reaches_h2():
    conn = server_conn()
    client = client_conn()
    wire = client.data_to_send() + (20000).to_bytes(3, "big") + b"\x00\x00" + (1).to_bytes(4, "big") + bytes(20000)
    with pytest.raises(h2.exceptions.ProtocolError):
        through_split(conn, Inbound(conn), wire)


def test_credit_for_a_stream_never_opened_is_h2s_error():
    ours, reference = server_conn(), server_conn()
    wire = client_conn().data_to_send() + window_update(7, 10)
    with pytest.raises(h2.exceptions.NoSuchStreamError):
        reference.receive_data(wire)
    with pytest.raises(h2.exceptions.NoSuchStreamError):
        through_split(ours, Inbound(ours), wire)


def frames_of(wire: bytes) -> list[tuple[int, int, int, bytes]]:
    """(type, flags, stream, payload) of each frame in ``wire``."""
    out, pos = [], 0
    while pos < len(wire):
        length = int.from_bytes(wire[pos:pos + 3], "big")
        out.append((wire[pos + 3], wire[pos + 4], int.from_bytes(wire[pos + 5:pos + 9], "big"),
                    wire[pos + 9:pos + 9 + length]))
        pos += 9 + length
    return out


@pytest.mark.parametrize("seed", range(12))
def test_data_frames_over_pieces_are_the_frames_of_their_join(seed):
    """However the payload is cut into pieces, the frames are those of the joined bytes: full
    frames of max_frame, one short last frame, no flags, and payload bytes in order."""
    rnd = random.Random(seed)
    data = rnd.randbytes(rnd.randrange(1, 90_000))
    cuts = sorted(rnd.randrange(len(data)) for _ in range(rnd.randrange(0, 12)))
    pieces = [memoryview(data)[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)])]
    max_frame = rnd.choice([16384, 16385, 20000])
    wire = b"".join(data_frames(pieces, 5, max_frame))
    assert wire == b"".join(data_frames([memoryview(data)], 5, max_frame))
    frames = frames_of(wire)
    assert [len(p) for *_, p in frames[:-1]] == [max_frame] * (len(frames) - 1)
    assert 0 < len(frames[-1][3]) <= max_frame
    assert {(t, f, s) for t, f, s, _ in frames} == {(0, 0, 5)}
    assert b"".join(p for *_, p in frames) == data


def test_outgoing_takes_bytes_in_order_across_pieces():
    out = Outgoing([b"abc", b"", memoryview(b"defgh"), b"ij"])
    assert out.size == 10
    assert [bytes(v) for v in out.take(2)] == [b"ab"]
    assert [bytes(v) for v in out.take(4)] == [b"c", b"def"]
    assert [bytes(v) for v in out.take(100)] == [b"gh", b"ij"]
    assert out.size == 0 and out.take(5) == []
    assert Outgoing(b"").size == 0
