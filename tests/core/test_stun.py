"""STUN binding codec (app/core/stun.py) against byte vectors in tests/vectors/stun/."""

import struct
import zlib
from pathlib import Path

import pytest

from app.core import stun

VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "stun"
TXID = bytes.fromhex("7a1c3e5f90b2d4f61829ab4c")


def vector(name: str) -> bytes:
    return bytes.fromhex((VECTORS / name).read_text().strip())


REQUEST = vector("binding_request_tailnode.hex")


def test_vector_is_tailscales_40_byte_request():
    assert len(REQUEST) == 40
    assert REQUEST[:4] == b"\x00\x01\x00\x14" and REQUEST[4:8] == b"\x21\x12\xa4\x42"
    assert REQUEST[20:32] == b"\x80\x22\x00\x08tailnode"
    fp = struct.unpack(">I", REQUEST[36:])[0]
    assert fp == zlib.crc32(REQUEST[:32]) ^ 0x5354554E
    assert stun.binding_request(TXID) == REQUEST  # our client-side builder agrees


def test_parse_tailscale_request():
    assert stun.parse_binding_request(REQUEST) == TXID


def test_ipv4_response_matches_vector():
    resp = stun.handle_datagram(REQUEST, "192.0.2.1", 41641)
    assert resp == vector("binding_success_ipv4_192.0.2.1_41641.hex")
    assert len(resp) == 32
    assert stun.parse_binding_response(resp) == (TXID, "192.0.2.1", 41641)


def test_ipv6_response_matches_vector():
    resp = stun.handle_datagram(REQUEST, "2001:db8::1234", 3478)
    assert resp == vector("binding_success_ipv6_2001-db8--1234_3478.hex")
    assert len(resp) == 44
    assert stun.parse_binding_response(resp) == (TXID, "2001:db8::1234", 3478)


def test_ipv4_mapped_peer_is_answered_as_ipv4():
    assert stun.handle_datagram(REQUEST, "::ffff:192.0.2.1", 41641) == vector(
        "binding_success_ipv4_192.0.2.1_41641.hex"
    )


def test_scoped_ipv6_peer():
    resp = stun.handle_datagram(REQUEST, "fe80::1%eth0", 5)
    assert stun.parse_binding_response(resp) == (TXID, "fe80::1", 5)


def test_lenient_about_software_and_fingerprint():
    assert (
        stun.parse_binding_request(stun.binding_request(TXID, software=None, with_fingerprint=False)) == TXID
    )
    assert (
        stun.parse_binding_request(stun.binding_request(TXID, software=b"other", with_fingerprint=False))
        == TXID
    )
    assert stun.parse_binding_request(stun.binding_request(TXID, software=None)) == TXID


def _with_length(msg: bytes, length: int) -> bytes:
    return msg[:2] + struct.pack(">H", length) + msg[4:]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        REQUEST[:19],
        REQUEST[:-1],  # truncated fingerprint
        REQUEST + b"\x00\x00\x00\x00",  # trailing bytes beyond the declared length
        _with_length(REQUEST, 21),  # not a multiple of 4
        _with_length(REQUEST, 16),  # shorter than the datagram
        b"\x01\x01" + REQUEST[2:],  # a response, not a request
        b"\x00\x03" + REQUEST[2:],  # another method
        REQUEST[:4] + b"\x21\x12\xa4\x43" + REQUEST[8:],  # wrong cookie
        REQUEST[:-1] + bytes([REQUEST[-1] ^ 1]),  # wrong fingerprint
        _with_length(REQUEST[:20] + b"\x80\x22\x00\x40tailnode" + REQUEST[32:], 20),  # attribute overruns
        _with_length(REQUEST[:20] + REQUEST[32:] + REQUEST[20:32], 20),  # fingerprint not last
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        bytes(20),
    ],
)
def test_malformed_datagrams_are_dropped(data):
    assert stun.handle_datagram(data, "192.0.2.1", 1) is None


def test_txid_is_echoed_verbatim():
    for txid in (bytes(12), b"\xff" * 12, bytes(range(12))):
        resp = stun.handle_datagram(stun.binding_request(txid), "198.51.100.9", 65535)
        assert resp[8:20] == txid
        assert stun.parse_binding_response(resp) == (txid, "198.51.100.9", 65535)


def test_response_parser_falls_back_to_mapped_address():
    attr = struct.pack(">HHBBH", stun.ATTR_MAPPED_ADDRESS, 8, 0, 1, 7) + bytes([10, 0, 0, 1])
    msg = struct.pack(">HHI", 0x0101, len(attr), stun.MAGIC_COOKIE) + TXID + attr
    assert stun.parse_binding_response(msg) == (TXID, "10.0.0.1", 7)
    assert stun.parse_binding_response(REQUEST) is None
