"""Early payload (EarlyNoise) framing and the client-side splitter."""

import json
import os

import pytest

from app.core.noise import (
    EARLY_PAYLOAD_MAGIC,
    EarlyNoise,
    EarlyPayloadError,
    Initiator,
    Responder,
    early_payload,
    split_early_payload,
)
from app.core.noise.early import MAX_EARLY_PAYLOAD

CHALLENGE = bytes.fromhex("3bcbf0b0a65ba8d94f7c78217d1b279b1045de7042da8d718b174b89381a9659")
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SETTINGS_HEADER = b"\x00\x00\x12\x04\x00\x00\x00\x00\x00"  # what a server's HTTP/2 starts with


def test_layout():
    body = b'{"nodeKeyChallenge":"chalpub:' + CHALLENGE.hex().encode() + b'"}'
    assert early_payload(CHALLENGE) == b"\xff\xff\xffTS" + len(body).to_bytes(4, "big") + body
    assert EARLY_PAYLOAD_MAGIC == b"\xff\xff\xff\x54\x53"
    assert len(body) == 95


def test_challenge_must_be_32_bytes():
    with pytest.raises(ValueError):
        early_payload(CHALLENGE[:31])


def test_split_full_payload_and_rest():
    stream = early_payload(CHALLENGE) + SETTINGS_HEADER
    early, rest = split_early_payload(stream)
    assert early == EarlyNoise(node_key_challenge=CHALLENGE)
    assert rest == SETTINGS_HEADER


def test_split_without_early_payload_returns_everything():
    assert split_early_payload(SETTINGS_HEADER + b"\x00" * 18) == (None, SETTINGS_HEADER + b"\x00" * 18)
    # A non-magic first byte settles it even before 9 bytes arrived.
    assert split_early_payload(b"\x00\x00") == (None, b"\x00\x00")
    assert split_early_payload(b"\xff\xff\xff\x00") == (None, b"\xff\xff\xff\x00")


def test_split_needs_more_bytes():
    payload = early_payload(CHALLENGE)
    assert split_early_payload(b"") is None
    for n in range(1, len(payload)):
        assert split_early_payload(payload[:n]) is None, n
    assert split_early_payload(payload) == (EarlyNoise(CHALLENGE), b"")


def test_length_limit():
    assert MAX_EARLY_PAYLOAD == 10 * 1024 * 1024
    with pytest.raises(EarlyPayloadError, match="exceeds"):
        split_early_payload(EARLY_PAYLOAD_MAGIC + (MAX_EARLY_PAYLOAD + 1).to_bytes(4, "big"))


@pytest.mark.parametrize("body", [
    b"not json",
    b"[1,2]",
    b'{"nodeKeyChallenge":"mkey:' + b"00" * 32 + b'"}',
    b'{"nodeKeyChallenge":"chalpub:1234"}',
    b'{"nodeKeyChallenge":""}',
    b'{"nodeKeyChallenge":7}',
    b"\xff\xfe",
])
def test_malformed_json_rejected(body):
    with pytest.raises(EarlyPayloadError):
        split_early_payload(EARLY_PAYLOAD_MAGIC + len(body).to_bytes(4, "big") + body)


def test_lenient_like_go_decoder():
    body = json.dumps({"NodeKeyChallenge": "chalpub:" + CHALLENGE.hex().upper(), "future": 1}).encode()
    early, rest = split_early_payload(EARLY_PAYLOAD_MAGIC + len(body).to_bytes(4, "big") + body + b"x")
    assert early.node_key_challenge == CHALLENGE and rest == b"x"
    early, _ = split_early_payload(EARLY_PAYLOAD_MAGIC + b"\x00\x00\x00\x02{}")
    assert early == EarlyNoise(node_key_challenge=None)


def test_through_a_real_transport():
    # Server: handshake, then the early payload and HTTP/2 bytes as separate records; the
    # client reassembles plaintext and splits the early payload off before HTTP/2.
    server_key, machine = os.urandom(32), os.urandom(32)
    responder = Responder(server_key)
    client = Initiator(machine, responder.public, 130, os.urandom(32))
    result = responder.respond(client.initiation(), os.urandom(32))
    client_transport = client.finish(result.response)

    wire = result.transport.encrypt(early_payload(CHALLENGE)) + result.transport.encrypt(SETTINGS_HEADER)
    plaintext = b""
    outcome = None
    for i in range(0, len(wire), 7):
        plaintext += b"".join(client_transport.receive_data(wire[i:i + 7]))
        outcome = split_early_payload(plaintext)
        if outcome is not None:
            break
    early, rest = outcome
    assert early.node_key_challenge == CHALLENGE
    rest += b"".join(client_transport.receive_data(wire[i + 7:]))
    assert rest == SETTINGS_HEADER

    # Without an early payload, the client's HTTP/2 bytes pass straight through.
    wire = result.transport.encrypt(H2_PREFACE)
    assert split_early_payload(b"".join(client_transport.receive_data(wire))) == (None, H2_PREFACE)
