"""The STUN codec against a Binding Request captured from a real Tailscale client."""

import binascii
import struct
from pathlib import Path

from app.core import stun

CAPTURE = bytes.fromhex((Path(__file__).parent.parent / "vectors/stun/real_client_binding_request.hex").read_text().strip())


def test_real_request_is_a_tailnode_binding_request_with_valid_fingerprint():
    assert len(CAPTURE) == 40
    assert CAPTURE[:2] == b"\x00\x01" and CAPTURE[4:8] == b"\x21\x12\xa4\x42"
    assert CAPTURE[20:24] == b"\x80\x22\x00\x08" and CAPTURE[24:32] == b"tailnode"
    (fp,) = struct.unpack(">I", CAPTURE[36:40])
    assert fp == binascii.crc32(CAPTURE[:32]) ^ 0x5354554E   # CRC of everything before the attribute
    assert stun.parse_binding_request(CAPTURE) == CAPTURE[8:20]


def test_real_request_is_answered_with_its_transaction_id():
    for ip, port in (("192.0.2.7", 41641), ("2001:db8::7", 3478), ("::ffff:192.0.2.9", 1)):
        reply = stun.handle_datagram(CAPTURE, ip, port)
        assert reply is not None and reply[8:20] == CAPTURE[8:20]
        _txid, got_ip, got_port = stun.parse_binding_response(reply)
        assert (got_ip, got_port) == (ip.replace("::ffff:", ""), port)
        assert len(reply) == (32 if ":" not in got_ip else 44)


def test_truncated_or_altered_capture_is_ignored():
    assert stun.handle_datagram(CAPTURE[:19], "192.0.2.1", 1) is None
    assert stun.handle_datagram(b"\x01\x01" + CAPTURE[2:], "192.0.2.1", 1) is None
