"""DERP frame codec, login boxes and the incremental parser (app/core/derp/frames.py)."""

import json
import struct

import pytest
from nacl.public import PrivateKey

from app.core.derp import frames
from app.core.derp.errors import FrameError, FrameTooLarge, HandshakeError
from app.core.derp.frames import ClientInfo, Frame, FrameParser, FrameType, ServerInfo

SERVER_PRIV = bytes(range(1, 33))
CLIENT_PRIV = bytes(range(33, 65))
SERVER_PUB = bytes(PrivateKey(SERVER_PRIV).public_key)
CLIENT_PUB = bytes(PrivateKey(CLIENT_PRIV).public_key)
KEY_A = b"\xaa" * 32
KEY_B = b"\xbb" * 32


def test_magic_and_frame_type_values_match_the_protocol():
    assert frames.MAGIC == bytes.fromhex("44455250f09f9491")
    assert frames.DISCO_MAGIC == bytes.fromhex("5453f09f92ac")
    assert [int(t) for t in FrameType] == [*range(0x01, 0x0B), *range(0x10, 0x16)]


def test_header_is_type_then_big_endian_length():
    assert frames.encode_frame(FrameType.PING, b"12345678") == b"\x12\x00\x00\x00\x0812345678"
    assert frames.KEEP_ALIVE_FRAME == b"\x06\x00\x00\x00\x00"
    assert frames.WATCH_CONNS_FRAME == b"\x10\x00\x00\x00\x00"


def test_server_key_layout_and_parse():
    raw = frames.server_key(SERVER_PUB)
    assert raw[:5] == b"\x01\x00\x00\x00\x28"
    assert raw[5:13] == frames.MAGIC and raw[13:] == SERVER_PUB
    assert frames.parse_server_key(raw[5:] + b"future") == SERVER_PUB
    with pytest.raises(HandshakeError):
        frames.parse_server_key(b"NOTMAGIC" + SERVER_PUB)
    with pytest.raises(HandshakeError):
        frames.parse_server_key(frames.MAGIC + SERVER_PUB[:31])


def test_packet_frames_layouts():
    sp = frames.send_packet(KEY_B, b"data")
    assert sp == b"\x04\x00\x00\x00\x24" + KEY_B + b"data"
    assert frames.parse_send_packet(sp[5:]) == (KEY_B, b"data")
    rp = frames.recv_packet(KEY_A, b"data")
    assert rp == b"\x05\x00\x00\x00\x24" + KEY_A + b"data"
    assert frames.parse_recv_packet(rp[5:]) == (KEY_A, b"data")
    fp = frames.forward_packet(KEY_A, KEY_B, b"x")
    assert fp == b"\x0a\x00\x00\x00\x41" + KEY_A + KEY_B + b"x"
    assert frames.parse_forward_packet(fp[5:]) == (KEY_A, KEY_B, b"x")
    with pytest.raises(FrameError):
        frames.parse_send_packet(b"short")
    with pytest.raises(FrameError):
        frames.parse_forward_packet(KEY_A)
    with pytest.raises(FrameError):
        frames.parse_send_packet(KEY_A + bytes(frames.MAX_PACKET_SIZE + 1))


def test_small_frames():
    assert frames.note_preferred(True) == b"\x07\x00\x00\x00\x01\x01"
    assert frames.note_preferred(False) == b"\x07\x00\x00\x00\x01\x00"
    assert frames.parse_note_preferred(b"\x01") is True
    with pytest.raises(FrameError):
        frames.parse_note_preferred(b"\x01\x01")
    assert (
        frames.peer_gone(KEY_A, frames.PeerGoneReason.NOT_HERE) == b"\x08\x00\x00\x00\x21" + KEY_A + b"\x01"
    )
    assert frames.parse_peer_gone(KEY_A + b"\x01") == (KEY_A, 1)
    assert frames.parse_peer_gone(KEY_A) == (KEY_A, 0)  # old servers: no reason byte
    assert frames.close_peer(KEY_B) == b"\x11\x00\x00\x00\x20" + KEY_B
    assert frames.pong(b"abcdefgh") == b"\x13\x00\x00\x00\x08abcdefgh"
    assert frames.parse_ping(b"abcdefgh" + b"extra") == b"abcdefgh"
    with pytest.raises(FrameError):
        frames.parse_ping(b"short")
    with pytest.raises(FrameError):
        frames.parse_ping(bytes(1001))
    assert frames.health("dup") == b"\x14\x00\x00\x00\x03dup"
    assert frames.restarting(1000, 60000) == b"\x15\x00\x00\x00\x08" + struct.pack(">II", 1000, 60000)
    assert frames.parse_restarting(struct.pack(">II", 1, 2)) == (1, 2)
    with pytest.raises(ValueError):
        frames.ping(b"seven!!")


def test_peer_present_maps_ipv4_and_round_trips():
    raw = frames.peer_present(KEY_A, "192.0.2.7", 41641, frames.PeerPresentFlags.REGULAR)
    payload = raw[5:]
    assert len(payload) == 32 + 16 + 2 + 1
    assert payload[32:48] == bytes(10) + b"\xff\xff" + bytes([192, 0, 2, 7])
    assert payload[48:50] == (41641).to_bytes(2, "big") and payload[50] == 1
    assert frames.parse_peer_present(payload) == (KEY_A, "192.0.2.7", 41641, 1)
    v6 = frames.peer_present(KEY_B, "2001:db8::1", 1, 2)[5:]
    assert frames.parse_peer_present(v6) == (KEY_B, "2001:db8::1", 1, 2)
    assert frames.parse_peer_present(frames.peer_present(KEY_B, None, 0, 1)[5:]) == (KEY_B, None, 0, 1)


def test_is_disco_needs_magic_and_minimum_length():
    assert frames.is_disco(frames.DISCO_MAGIC + bytes(56))
    assert not frames.is_disco(frames.DISCO_MAGIC + bytes(55))
    assert not frames.is_disco(b"TS" + bytes(80))


# --- login boxes ---------------------------------------------------------------------------


def test_client_info_json_matches_go_field_names():
    assert json.loads(ClientInfo().to_json()) == {"version": 2, "CanAckPings": True}
    info = ClientInfo(mesh_key=b"\x01" * 32, is_prober=True)
    assert json.loads(info.to_json()) == {
        "meshKey": "01" * 32,
        "version": 2,
        "CanAckPings": True,
        "IsProber": True,
    }


def test_client_info_box_round_trip():
    nonce = bytes(range(24))
    raw = frames.client_info(CLIENT_PRIV, SERVER_PUB, ClientInfo(), nonce=nonce)
    assert raw[0] == FrameType.CLIENT_INFO
    payload = raw[5:]
    assert payload[:32] == CLIENT_PUB and payload[32:56] == nonce
    key, info = frames.open_client_info(SERVER_PRIV, payload)
    assert key == CLIENT_PUB and info == ClientInfo()


def test_client_info_parse_is_go_tolerant_but_type_strict():
    parse = ClientInfo.from_json
    got = parse(b'{"VERSION":2,"canackpings":true,"Unknown":[1],"isprober":null,"meshkey":""}')
    assert got == ClientInfo(version=2, can_ack_pings=True)
    assert parse(b"{}") == ClientInfo(version=0, can_ack_pings=False)
    for bad in (
        b'{"version":"2"}',
        b'{"version":true}',
        b'{"CanAckPings":1}',
        b"[]",
        b"not json",
        b'{"meshKey":"zz"}',
        b'{"meshKey":"0101"}',
        b"\xff",
    ):
        with pytest.raises(HandshakeError):
            parse(bad)


def test_client_info_box_that_does_not_open_is_a_handshake_error():
    payload = frames.client_info(CLIENT_PRIV, SERVER_PUB)[5:]
    tampered = payload[:-1] + bytes([payload[-1] ^ 1])
    with pytest.raises(HandshakeError):
        frames.open_client_info(SERVER_PRIV, tampered)
    with pytest.raises(HandshakeError):  # sealed to another server
        frames.open_client_info(CLIENT_PRIV, payload)
    with pytest.raises(HandshakeError):
        frames.open_client_info(SERVER_PRIV, payload[:55])
    with pytest.raises(HandshakeError):
        frames.open_client_info(SERVER_PRIV, CLIENT_PUB + bytes(30))  # box shorter than its MAC


def test_server_info_round_trip_and_exact_json():
    raw = frames.server_info(SERVER_PRIV, CLIENT_PUB)
    assert raw[0] == FrameType.SERVER_INFO
    info = frames.open_server_info(CLIENT_PRIV, SERVER_PUB, raw[5:])
    assert info == ServerInfo(version=2)
    assert ServerInfo().to_json() == b'{"version":2}'
    hinted = ServerInfo(token_bucket_bytes_per_second=10, token_bucket_bytes_burst=20)
    assert ServerInfo.from_json(hinted.to_json()) == hinted


# --- parser --------------------------------------------------------------------------------


def _stream() -> tuple[bytes, list[Frame]]:
    parts = [
        (FrameType.SEND_PACKET, KEY_B + b"hello"),
        (FrameType.KEEP_ALIVE, b""),
        (FrameType.PING, b"12345678"),
        (FrameType.SEND_PACKET, KEY_A + bytes(2000)),
    ]
    raw = b"".join(frames.encode_frame(t, p) for t, p in parts)
    return raw, [Frame(t, p) for t, p in parts]


def test_parser_whole_stream_at_once():
    raw, want = _stream()
    assert FrameParser().receive_data(raw) == want


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 7, 64, 1000])
def test_parser_buffers_partial_frames(chunk):
    raw, want = _stream()
    parser = FrameParser()
    got = []
    for i in range(0, len(raw), chunk):
        got += parser.receive_data(raw[i : i + chunk])
    assert got == want
    assert parser.buffered == 0


def test_parser_skips_unknown_types_by_length_even_when_split():
    unknown = b"\x0b\x00\x00\x00\x05abcde" + b"\x7f\x00\x00\x10\x00" + bytes(4096)
    raw = unknown + frames.ping(b"12345678")
    for chunk in (1, 6, 100, len(raw)):
        parser = FrameParser()
        got = []
        for i in range(0, len(raw), chunk):
            got += parser.receive_data(raw[i : i + chunk])
        assert got == [Frame(FrameType.PING, b"12345678")]
        assert parser.buffered == 0


def test_parser_rejects_oversized_headers_before_buffering():
    parser = FrameParser(frames.SERVER_LIMITS)
    with pytest.raises(FrameTooLarge) as err:
        parser.receive_data(b"\x04" + struct.pack(">I", 32 + (64 << 10) + 1))
    assert err.value.limit == 32 + (64 << 10) and err.value.frame_type == 0x04
    # exactly at the limit is fine
    parser = FrameParser(frames.SERVER_LIMITS)
    assert parser.receive_data(b"\x04" + struct.pack(">I", 32 + (64 << 10))) == []
    with pytest.raises(FrameTooLarge):
        FrameParser(frames.SERVER_LIMITS).receive_data(b"\x02" + struct.pack(">I", (256 << 10) + 1))
    with pytest.raises(FrameTooLarge):  # unknown types are bounded by the overall 1 MiB too
        FrameParser().receive_data(b"\x7e" + struct.pack(">I", (1 << 20) + 1))
    with pytest.raises(FrameTooLarge):
        FrameParser().receive_data(b"\x14" + struct.pack(">I", 0xFFFFFFFF))


def test_parser_cost_is_linear_for_byte_by_byte_large_frames():
    payload = KEY_A + bytes(60000)
    raw = frames.encode_frame(FrameType.SEND_PACKET, payload)
    parser = FrameParser(frames.SERVER_LIMITS)
    got = []
    for i in range(len(raw)):
        got += parser.receive_data(raw[i : i + 1])
    assert got == [Frame(FrameType.SEND_PACKET, payload)]
