"""Handshake message codecs (PROTOCOL.md 2.4)."""

import pytest

from app.core.noise import HandshakeError
from app.core.noise.messages import (
    INITIATION_LEN,
    RESPONSE_LEN,
    Initiation,
    Response,
    decode_error,
    encode_error,
)


def test_initiation_layout_roundtrip():
    init = Initiation(version=130, ephemeral_public=b"E" * 32, machine_key_ciphertext=b"M" * 48, tag=b"T" * 16)
    raw = init.encode()
    assert len(raw) == INITIATION_LEN == 101
    assert raw[:5] == b"\x00\x82\x01\x00\x60"
    assert raw[5:37] == b"E" * 32 and raw[37:85] == b"M" * 48 and raw[85:] == b"T" * 16
    assert Initiation.decode(raw) == init
    assert Initiation.decode(bytearray(raw)) == init


def test_response_layout_roundtrip():
    resp = Response(ephemeral_public=b"e" * 32, tag=b"t" * 16)
    raw = resp.encode()
    assert len(raw) == RESPONSE_LEN == 51
    assert raw[:3] == b"\x02\x00\x30"
    assert Response.decode(raw) == resp


def test_error_message_roundtrip():
    raw = encode_error("wrong handshake initiation size")
    assert raw[:3] == b"\x03\x00\x1f"
    assert decode_error(raw) == "wrong handshake initiation size"
    assert decode_error(b"\x03\x00\x02\xff\xfe") == "\ufffd\ufffd"  # never crashes on bad UTF-8
    assert decode_error(encode_error("")) == ""


@pytest.mark.parametrize("raw", [b"", b"\x03\x00", b"\x02\x00\x00", b"\x03\x00\x02x"])
def test_decode_error_rejects_malformed(raw):
    with pytest.raises(HandshakeError):
        decode_error(raw)
