"""Noise IK handshake: fixed transcripts, interop with `noiseprotocol`, and bad input."""

import hashlib
import json
import os
import warnings
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from noise.connection import Keypair, NoiseConnection

from app.core.noise import (
    INITIATION_LEN,
    RESPONSE_LEN,
    DecryptError,
    HandshakeError,
    Initiator,
    NoiseTransport,
    Responder,
    ServerRefusedError,
    encode_error,
    reply_size,
    respond,
)
from app.core.noise.symmetric import SymmetricState, private_key, prologue, public_bytes

VECTORS = json.loads(
    (Path(__file__).resolve().parents[1] / "vectors" / "noise" / "ts2021_ik.json").read_text()
)["cases"]
NAME = b"Noise_IK_25519_ChaChaPoly_BLAKE2s"
LOW_ORDER = [bytes(32), (1).to_bytes(32, "little")]


def pub(private: bytes) -> bytes:
    return public_bytes(private_key(private))


def keys(label: str) -> bytes:
    return hashlib.blake2s(label.encode()).digest()


SERVER = keys("test server")
MACHINE = keys("test machine")


def good_initiation(version: int = 130) -> bytes:
    return Initiator(MACHINE, pub(SERVER), version, os.urandom(32)).initiation()


def flip(data: bytes, index: int) -> bytes:
    b = bytearray(data)
    b[index] ^= 0x01
    return bytes(b)


def noise_peer(initiator: bool, static: bytes, version: int, remote_static: bytes | None = None,
               ephemeral: bytes | None = None) -> NoiseConnection:
    """A `noiseprotocol` peer: the independent implementation."""
    conn = NoiseConnection.from_name(NAME)
    if initiator:
        conn.set_as_initiator()
    else:
        conn.set_as_responder()
    conn.set_prologue(prologue(version))
    conn.set_keypair_from_private_bytes(Keypair.STATIC, static)
    if remote_static is not None:
        conn.set_keypair_from_public_bytes(Keypair.REMOTE_STATIC, remote_static)
    with warnings.catch_warnings():  # it warns that fixed ephemeral keys are for testing only
        warnings.simplefilter("ignore")
        if ephemeral is not None:
            conn.set_keypair_from_private_bytes(Keypair.EPHEMERAL, ephemeral)
        conn.start_handshake()
    return conn


# -- fixed transcripts (tests/vectors/noise/generate.py, made with noiseprotocol) ---------


@pytest.fixture(params=VECTORS, ids=[c["name"] for c in VECTORS])
def vector(request):
    return {k: bytes.fromhex(v) if isinstance(v, str) and k not in ("name", "prologue") else v
            for k, v in request.param.items()}


def test_vector_initiation_is_reproduced(vector):
    init = Initiator(vector["machine_private"], vector["server_static_public"], vector["version"],
                     vector["client_ephemeral_private"]).initiation()
    assert init == vector["initiation"]
    assert init[:2] == vector["version"].to_bytes(2, "big")
    assert prologue(vector["version"]).decode() == vector["prologue"]


def test_vector_response_and_results(vector):
    result = respond(vector["server_static_private"], vector["initiation"],
                     vector["server_ephemeral_private"])
    assert result.response == vector["response"]
    assert result.version == vector["version"]
    assert result.machine_public == vector["machine_public"]
    assert result.handshake_hash == vector["handshake_hash"]


def test_vector_client_finishes_with_same_hash(vector):
    client = Initiator(vector["machine_private"], vector["server_static_public"], vector["version"],
                       vector["client_ephemeral_private"])
    client.finish(vector["response"])
    assert client.handshake_hash == vector["handshake_hash"]


def test_vector_records(vector):
    # Our transports must produce and accept the recorded records at each counter, which
    # checks split keys (k1 client->server, k2 server->client) and the big-endian nonce.
    client = Initiator(vector["machine_private"], vector["server_static_public"], vector["version"],
                       vector["client_ephemeral_private"])
    server_side = respond(vector["server_static_private"], client.initiation(),
                          vector["server_ephemeral_private"]).transport
    client_side = client.finish(vector["response"])
    for rec in vector["records"]:
        plaintext, want, n = bytes.fromhex(rec["plaintext"]), bytes.fromhex(rec["record"]), rec["counter"]
        if rec["direction"] == "client_to_server":
            k_send, k_recv = vector["k1"], vector["k2"]
        else:
            k_send, k_recv = vector["k2"], vector["k1"]
        assert NoiseTransport(k_send, k_recv, send_nonce=n).encrypt_record(plaintext) == want
        assert NoiseTransport(k_recv, k_send, receive_nonce=n).receive_data(want) == [plaintext]
        if n == 0:  # the live transports from the handshake start at counter 0
            sender = client_side if rec["direction"] == "client_to_server" else server_side
            receiver = server_side if sender is client_side else client_side
            assert sender.encrypt_record(plaintext) == want
            assert receiver.receive_data(want) == [plaintext]


# -- live interop with noiseprotocol -------------------------------------------------------


def test_noiseprotocol_initiator_against_our_responder():
    server_static, machine = os.urandom(32), os.urandom(32)
    client = noise_peer(True, machine, 130, remote_static=pub(server_static))
    msg1 = bytes(client.write_message())
    init = (130).to_bytes(2, "big") + b"\x01\x00\x60" + msg1

    result = Responder(server_static).respond(init, os.urandom(32))
    assert result.machine_public == pub(machine)
    assert result.version == 130
    assert result.response[:3] == b"\x02\x00\x30"
    client.read_message(result.response[3:])
    assert client.handshake_finished
    assert client.get_handshake_hash() == result.handshake_hash

    # Transport: noiseprotocol uses the Noise-spec little-endian nonce, TS2021 big-endian.
    # They coincide only at counter 0, so only the first message each way can be exchanged
    # with noiseprotocol itself.
    server = result.transport
    rec = server.encrypt(b"server says hi")
    assert client.decrypt(rec[3:]) == b"server says hi"
    ct = client.encrypt(b"client says hi")
    assert server.receive_data(b"\x04" + len(ct).to_bytes(2, "big") + ct) == [b"client says hi"]

    # Later records: checked with noiseprotocol's own split key and a hand-built
    # big-endian nonce (counter 1).
    k_c2s = client.noise_protocol.cipher_state_encrypt.k
    k_s2c = client.noise_protocol.cipher_state_decrypt.k
    rec = server.encrypt(b"second")
    assert ChaCha20Poly1305(k_s2c).decrypt(bytes(4) + (1).to_bytes(8, "big"), rec[3:], None) == b"second"
    ct = ChaCha20Poly1305(k_c2s).encrypt(bytes(4) + (1).to_bytes(8, "big"), b"second up", None)
    assert server.receive_data(b"\x04" + len(ct).to_bytes(2, "big") + ct) == [b"second up"]


def test_our_initiator_against_noiseprotocol_responder():
    server_static, machine = os.urandom(32), os.urandom(32)
    ours = Initiator(machine, pub(server_static), 130, os.urandom(32))
    init = ours.initiation()
    assert len(init) == INITIATION_LEN and init[:5] == b"\x00\x82\x01\x00\x60"

    server = noise_peer(False, server_static, 130)
    assert server.read_message(init[5:]) == b""  # empty handshake payload
    assert server.noise_protocol.handshake_state.rs.public_bytes == pub(machine)
    msg2 = bytes(server.write_message())
    transport = ours.finish(b"\x02\x00\x30" + msg2)
    assert ours.handshake_hash == server.get_handshake_hash()

    rec = transport.encrypt(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    assert rec[:3] == b"\x04\x00\x28"
    assert server.decrypt(rec[3:]) == b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    ct = server.encrypt(b"settings")
    assert transport.receive_data(b"\x04" + len(ct).to_bytes(2, "big") + ct) == [b"settings"]

    # noiseprotocol's second message uses nonce 00000000 01000000 00000000 (little-endian);
    # a TS2021 peer expects 00000000 00000000 00000001 and must reject it.
    ct = server.encrypt(b"little-endian nonce")
    with pytest.raises(DecryptError) as info:
        transport.receive_data(b"\x04" + len(ct).to_bytes(2, "big") + ct)
    assert info.value.counter == 1


def test_our_initiator_and_responder_agree():
    responder = Responder(SERVER)
    assert responder.public == pub(SERVER)
    for version in (1, 113, 130, 65535):
        client = Initiator(MACHINE, responder.public, version, os.urandom(32))
        result = responder.respond(client.initiation(), os.urandom(32))
        assert len(result.response) == RESPONSE_LEN
        assert result.version == version
        assert result.machine_public == pub(MACHINE)
        c = client.finish(result.response)
        assert client.handshake_hash == result.handshake_hash
        assert result.transport.receive_data(c.encrypt(b"up")) == [b"up"]
        assert c.receive_data(result.transport.encrypt(b"down")) == [b"down"]


def test_prologue_mismatch_fails():
    # noiseprotocol initiator mixes in "v130" but the cleartext header claims 131.
    server_static = os.urandom(32)
    client = noise_peer(True, MACHINE, 130, remote_static=pub(server_static))
    init = (131).to_bytes(2, "big") + b"\x01\x00\x60" + bytes(client.write_message())
    with pytest.raises(HandshakeError, match="decrypting machine key failed"):
        respond(server_static, init, os.urandom(32))


def test_version_header_is_authenticated():
    init = good_initiation(130)
    respond(SERVER, init, os.urandom(32))  # untouched: fine
    with pytest.raises(HandshakeError):
        respond(SERVER, (129).to_bytes(2, "big") + init[2:], os.urandom(32))


def test_wrong_server_key_fails():
    init = good_initiation()
    with pytest.raises(HandshakeError, match="decrypting machine key failed"):
        respond(keys("another server"), init, os.urandom(32))


# -- malformed initiations -----------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 5, 100, 102, 200])
def test_initiation_wrong_size(size):
    data = (good_initiation() * 2)[:size]
    with pytest.raises(HandshakeError) as info:
        respond(SERVER, data, os.urandom(32))
    assert info.value.message == "wrong handshake initiation size"


@pytest.mark.parametrize("kind", [0x00, 0x02, 0x03, 0x04, 0xFF])
def test_initiation_wrong_type(kind):
    init = bytearray(good_initiation())
    init[2] = kind
    with pytest.raises(HandshakeError) as info:
        respond(SERVER, bytes(init), os.urandom(32))
    assert info.value.message == "unexpected handshake message type"


@pytest.mark.parametrize("length", [0, 95, 97, 0xFFFF])
def test_initiation_wrong_length_field(length):
    init = bytearray(good_initiation())
    init[3:5] = length.to_bytes(2, "big")
    with pytest.raises(HandshakeError) as info:
        respond(SERVER, bytes(init), os.urandom(32))
    assert info.value.message == "wrong handshake initiation length"


@pytest.mark.parametrize(("index", "message"), [
    (5, "decrypting machine key failed"),  # ephemeral key (changes es and h)
    (36, "decrypting machine key failed"),
    (37, "decrypting machine key failed"),  # encrypted machine key
    (84, "decrypting machine key failed"),  # its tag
    (85, "decrypting initiation tag failed"),  # payload tag
    (100, "decrypting initiation tag failed"),
])
def test_initiation_tampered(index, message):
    with pytest.raises(HandshakeError) as info:
        respond(SERVER, flip(good_initiation(), index), os.urandom(32))
    assert info.value.message == message


def test_garbage_initiation_with_valid_header():
    init = (130).to_bytes(2, "big") + b"\x01\x00\x60" + b"\xaa" * 96
    with pytest.raises(HandshakeError):
        respond(SERVER, init, os.urandom(32))


@pytest.mark.parametrize("low_order", LOW_ORDER)
def test_all_zero_or_low_order_ephemeral_rejected(low_order):
    init = good_initiation()
    init = init[:5] + low_order + init[37:]
    with pytest.raises(HandshakeError, match="computing es: low-order public key"):
        respond(SERVER, init, os.urandom(32))


def test_low_order_machine_key_rejected():
    # Hand-built initiation whose (correctly encrypted) machine key is all zeros: the
    # server must refuse the ss DH rather than derive keys from a zero secret.
    eph = private_key(os.urandom(32))
    s = SymmetricState()
    s.mix_hash(prologue(130))
    s.mix_hash(pub(SERVER))
    s.mix_hash(public_bytes(eph))
    s.mix_key(eph.exchange(private_key(SERVER).public_key()))
    machine_ct = s.encrypt_and_hash(bytes(32))
    s.mix_key(b"\x00" * 32)
    tag = s.encrypt_and_hash(b"")
    init = b"\x00\x82\x01\x00\x60" + public_bytes(eph) + machine_ct + tag
    with pytest.raises(HandshakeError, match="computing ss: low-order public key"):
        respond(SERVER, init, os.urandom(32))


def test_error_frame_of_a_refusal():
    with pytest.raises(HandshakeError) as info:
        respond(SERVER, b"short", os.urandom(32))
    frame = info.value.error_frame()
    text = b"wrong handshake initiation size"
    assert frame == b"\x03" + len(text).to_bytes(2, "big") + text


def test_responder_key_lengths_checked():
    with pytest.raises(ValueError):
        respond(b"\x01" * 31, good_initiation(), os.urandom(32))
    with pytest.raises(ValueError):
        respond(SERVER, good_initiation(), b"\x01" * 33)


# -- client side: the server's reply -------------------------------------------------------


def fresh_pair():
    client = Initiator(MACHINE, pub(SERVER), 130, os.urandom(32))
    return client, respond(SERVER, client.initiation(), os.urandom(32))


def test_client_gets_server_error_text():
    client, _ = fresh_pair()
    with pytest.raises(ServerRefusedError) as info:
        client.finish(encode_error("unsupported client version"))
    assert info.value.message == "unsupported client version"
    assert isinstance(info.value, HandshakeError)


@pytest.mark.parametrize("reply", [
    b"",
    b"\x05\x00\x30" + bytes(48),
    b"\x02\x00\x2f" + bytes(48),
    b"\x02\x00\x30" + bytes(47),
    b"\x02\x00\x30" + bytes(49),
    b"\x03\x00\x05hi",  # error message shorter than its length field
])
def test_client_rejects_malformed_reply(reply):
    client, _ = fresh_pair()
    with pytest.raises(HandshakeError):
        client.finish(reply)


@pytest.mark.parametrize("index", [3, 34, 35, 50])
def test_client_rejects_tampered_response(index):
    client, result = fresh_pair()
    with pytest.raises(HandshakeError):
        client.finish(flip(result.response, index))


@pytest.mark.parametrize("low_order", LOW_ORDER)
def test_client_rejects_low_order_server_ephemeral(low_order):
    client, result = fresh_pair()
    with pytest.raises(HandshakeError, match="computing ee: low-order public key"):
        client.finish(result.response[:3] + low_order + result.response[35:])


def test_client_finish_only_once():
    client, result = fresh_pair()
    client.finish(result.response)
    with pytest.raises(RuntimeError):
        client.finish(result.response)
    failed, result = fresh_pair()
    with pytest.raises(HandshakeError):
        failed.finish(flip(result.response, 50))
    with pytest.raises(RuntimeError):  # no retry on a half-mixed state
        failed.finish(result.response)


def test_initiator_argument_checks():
    with pytest.raises(ValueError):
        Initiator(MACHINE, pub(SERVER), 65536, os.urandom(32))
    with pytest.raises(ValueError):
        Initiator(MACHINE, pub(SERVER), -1, os.urandom(32))
    with pytest.raises(ValueError):
        Initiator(MACHINE, pub(SERVER)[:31], 130, os.urandom(32))
    with pytest.raises(HandshakeError, match="computing es"):
        Initiator(MACHINE, bytes(32), 130, os.urandom(32))


def test_reply_size():
    _, result = fresh_pair()
    assert reply_size(result.response[:3]) == RESPONSE_LEN
    assert reply_size(encode_error("nope")[:3]) == 3 + 4
    with pytest.raises(HandshakeError):
        reply_size(b"\x02\x00\x31")
    with pytest.raises(HandshakeError):
        reply_size(b"\x04\x00\x30")
    with pytest.raises(ValueError):
        reply_size(b"\x02")


def test_error_text_is_truncated_to_u16():
    frame = encode_error("x" * 70000)
    assert frame[1:3] == b"\xff\xff" and len(frame) == 3 + 0xFFFF


def test_noiseprotocol_with_fixed_ephemeral_matches_vector():
    # Guards the vector file itself: regenerate case 0 live and compare.
    v = VECTORS[0]
    client = noise_peer(True, bytes.fromhex(v["machine_private"]), v["version"],
                        remote_static=bytes.fromhex(v["server_static_public"]),
                        ephemeral=bytes.fromhex(v["client_ephemeral_private"]))
    assert bytes(client.write_message()) == bytes.fromhex(v["initiation"])[5:]
