"""TS2021 record layer: framing, splitting, big-endian nonces, fatal errors."""

import hashlib

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from app.core.noise import (
    MAX_FRAME_LEN,
    MAX_PLAINTEXT_LEN,
    DecryptError,
    FrameTooLargeError,
    NoiseError,
    NoiseTransport,
    NonceExhausted,
    RecordTypeError,
    TransportClosed,
)
from app.core.noise.transport import INVALID_NONCE, record_nonce

K1 = hashlib.blake2s(b"k1").digest()  # client -> server
K2 = hashlib.blake2s(b"k2").digest()  # server -> client


def pair(**kw):
    """(client, server) transports sharing keys, as after a handshake."""
    return NoiseTransport(K1, K2, **kw), NoiseTransport(K2, K1, **kw)


def be(counter: int) -> bytes:
    return b"\x00\x00\x00\x00" + counter.to_bytes(8, "big")


def test_limits():
    assert MAX_FRAME_LEN == 4096
    assert MAX_PLAINTEXT_LEN == 4096 - 3 - 16 == 4077


def test_roundtrip_both_directions_with_separate_counters():
    client, server = pair()
    for i in range(3):
        assert server.receive_data(client.encrypt(b"up %d" % i)) == [b"up %d" % i]
    assert client.receive_data(server.encrypt(b"down")) == [b"down"]
    assert (client.send_nonce, client.receive_nonce) == (3, 1)
    assert (server.send_nonce, server.receive_nonce) == (1, 3)


def test_record_layout():
    client, _ = pair()
    rec = client.encrypt(b"hello")
    assert rec[0] == 0x04
    assert int.from_bytes(rec[1:3], "big") == len(rec) - 3 == 5 + 16
    # empty AD, key k1, counter 0
    assert ChaCha20Poly1305(K1).decrypt(bytes(12), rec[3:], None) == b"hello"


def test_nonce_is_big_endian_counter_in_bytes_4_to_11():
    client, _ = pair()
    client.encrypt(b"zero")
    rec = client.encrypt(b"one")
    assert record_nonce(1) == be(1) == bytes(11) + b"\x01"
    assert ChaCha20Poly1305(K1).decrypt(be(1), rec[3:], None) == b"one"
    little_endian = bytes(4) + (1).to_bytes(8, "little")  # the Noise spec's layout
    with pytest.raises(InvalidTag):
        ChaCha20Poly1305(K1).decrypt(little_endian, rec[3:], None)


def test_nonce_byte_order_at_a_large_counter():
    n = 0x0102030405060708
    sender = NoiseTransport(K1, K2, send_nonce=n)
    rec = sender.encrypt(b"x")
    assert ChaCha20Poly1305(K1).decrypt(bytes.fromhex("000000000102030405060708"), rec[3:], None) == b"x"
    receiver = NoiseTransport(K2, K1, receive_nonce=n)
    ct = ChaCha20Poly1305(K1).encrypt(be(n), b"hand-built", None)
    assert receiver.receive_data(b"\x04" + len(ct).to_bytes(2, "big") + ct) == [b"hand-built"]
    assert receiver.receive_nonce == n + 1


def test_byte_by_byte_delivery():
    client, server = pair()
    records = [client.encrypt(b"first"), client.encrypt_record(b""), client.encrypt(b"third")]
    stream = b"".join(records)
    ends = [sum(len(r) for r in records[:i + 1]) for i in range(len(records))]
    got = []
    for i in range(len(stream)):
        got += server.receive_data(stream[i:i + 1])
        done = sum(1 for e in ends if e <= i + 1)
        assert len(got) == done  # a record appears exactly when its last byte arrives
        assert server.buffered == i + 1 - (ends[done - 1] if done else 0)
    assert got == [b"first", b"", b"third"]
    assert server.buffered == 0


@pytest.mark.parametrize("cut", range(0, 60, 1))
def test_records_split_at_any_point(cut):
    client, server = pair()
    stream = client.encrypt(b"a" * 10) + client.encrypt(b"b" * 20)
    got = server.receive_data(stream[:cut]) + server.receive_data(stream[cut:])
    assert got == [b"a" * 10, b"b" * 20]


def test_many_records_in_one_call():
    client, server = pair()
    stream = b"".join(client.encrypt(b"%d" % i) for i in range(100))
    assert server.receive_data(stream) == [b"%d" % i for i in range(100)]


def test_partial_header_is_buffered():
    client, server = pair()
    rec = client.encrypt(b"abc")
    assert server.receive_data(rec[:2]) == []
    assert server.buffered == 2
    assert server.receive_data(rec[2:]) == [b"abc"]


def test_zero_length_record():
    client, server = pair()
    assert client.encrypt(b"") == b""  # nothing to send, no counter used
    assert client.send_nonce == 0
    rec = client.encrypt_record(b"")
    assert rec[:3] == b"\x04\x00\x10" and len(rec) == 19
    assert server.receive_data(rec) == [b""]
    assert server.receive_data(client.encrypt(b"after")) == [b"after"]


def test_exact_max_plaintext_is_one_full_frame():
    client, server = pair()
    rec = client.encrypt(b"m" * 4077)
    assert len(rec) == 4096
    assert rec[1:3] == (4093).to_bytes(2, "big")
    assert server.receive_data(rec) == [b"m" * 4077]


def test_one_byte_more_is_split_into_two_records():
    client, server = pair()
    data = bytes(range(256)) * 16  # 4096 bytes, distinct content across the split
    stream = client.encrypt(data[:4078])
    assert len(stream) == 4096 + 3 + 1 + 16
    assert client.send_nonce == 2
    assert server.receive_data(stream) == [data[:4077], data[4077:4078]]


def test_large_write_is_chunked():
    client, server = pair()
    data = hashlib.shake_256(b"big").digest(100_000)
    stream = client.encrypt(data)
    chunks = server.receive_data(stream)
    assert len(chunks) == -(-100_000 // 4077)
    assert all(len(c) == 4077 for c in chunks[:-1])
    assert b"".join(chunks) == data


def test_encrypt_accepts_bytearray_and_memoryview():
    client, server = pair()
    assert server.receive_data(client.encrypt(bytearray(b"ba"))) == [b"ba"]
    assert server.receive_data(client.encrypt(memoryview(b"x" * 5000))) == [b"x" * 4077, b"x" * 923]
    assert server.receive_data(bytearray(client.encrypt(b"ba2"))) == [b"ba2"]


def test_encrypt_record_refuses_oversize():
    client, _ = pair()
    with pytest.raises(ValueError):
        client.encrypt_record(b"x" * 4078)
    assert client.send_nonce == 0


# -- fatal errors --------------------------------------------------------------------------


@pytest.mark.parametrize("length", [4094, 4095, 0xFFFF])
def test_frame_larger_than_4096_rejected_from_header_alone(length):
    _, server = pair()
    with pytest.raises(FrameTooLargeError) as info:
        server.receive_data(b"\x04" + length.to_bytes(2, "big"))
    assert info.value.size == 3 + length and info.value.limit == 4096
    with pytest.raises(TransportClosed) as closed:
        server.receive_data(b"")
    assert closed.value.cause is info.value


@pytest.mark.parametrize("kind", [0x00, 0x01, 0x02, 0x03, 0x05, 0xFF])
def test_wrong_record_type_rejected(kind):
    client, server = pair()
    rec = bytearray(client.encrypt(b"data"))
    rec[0] = kind
    with pytest.raises(RecordTypeError) as info:
        server.receive_data(bytes(rec))
    assert info.value.record_type == kind and info.value.expected == 0x04


def test_wrong_type_after_good_record():
    client, server = pair()
    with pytest.raises(RecordTypeError):
        server.receive_data(client.encrypt(b"ok") + b"\x17\x03\x03")  # e.g. TLS bytes


@pytest.mark.parametrize("index", [3, 10, -16, -1])
def test_tampered_ciphertext_rejected_and_transport_poisoned(index):
    client, server = pair()
    rec = bytearray(client.encrypt(b"some payload"))
    rec[index] ^= 0x80
    with pytest.raises(DecryptError) as info:
        server.receive_data(bytes(rec))
    assert info.value.counter == 0
    good = client.encrypt(b"next")
    with pytest.raises(TransportClosed) as closed:
        server.receive_data(good)
    assert isinstance(closed.value.cause, DecryptError)


def test_tampered_length_field_rejected():
    client, server = pair()
    rec = bytearray(client.encrypt(b"some payload"))
    rec[2] -= 1
    with pytest.raises(DecryptError):
        server.receive_data(bytes(rec))


@pytest.mark.parametrize("n", [0, 1, 15])
def test_record_shorter_than_tag_rejected(n):
    _, server = pair()
    with pytest.raises(DecryptError):
        server.receive_data(b"\x04" + n.to_bytes(2, "big") + bytes(n))


def test_reordered_or_replayed_records_rejected():
    client, server = pair()
    r0, r1 = client.encrypt(b"zero"), client.encrypt(b"one")
    with pytest.raises(DecryptError):
        server.receive_data(r1 + r0)
    client, server = pair()
    r0 = client.encrypt(b"zero")
    assert server.receive_data(r0) == [b"zero"]
    with pytest.raises(DecryptError) as info:
        server.receive_data(r0)
    assert info.value.counter == 1


def test_wrong_direction_key_rejected():
    client, _ = pair()
    other_client, _ = pair()
    with pytest.raises(DecryptError):  # a client cannot read its own direction
        other_client.receive_data(client.encrypt(b"mirror"))


def test_receive_error_does_not_stop_sending():
    # Mirrors controlbase: the read and write halves fail independently.
    client, server = pair()
    with pytest.raises(RecordTypeError):
        server.receive_data(b"\x05\x00\x00")
    assert client.receive_data(server.encrypt(b"goodbye")) == [b"goodbye"]


def test_send_nonce_exhaustion():
    client = NoiseTransport(K1, K2, send_nonce=INVALID_NONCE - 1)
    server = NoiseTransport(K2, K1, receive_nonce=INVALID_NONCE - 1)
    assert server.receive_data(client.encrypt(b"last")) == [b"last"]
    assert client.send_nonce == INVALID_NONCE
    with pytest.raises(NonceExhausted) as info:
        client.encrypt(b"one too many")
    assert info.value.direction == "send"
    with pytest.raises(TransportClosed):
        client.encrypt(b"again")
    with pytest.raises(TransportClosed):
        client.encrypt_record(b"")


def test_multi_record_write_needs_all_its_nonces():
    client = NoiseTransport(K1, K2, send_nonce=INVALID_NONCE - 1)
    with pytest.raises(NonceExhausted):
        client.encrypt(b"x" * 4078)  # needs two counters, only one left
    assert client.send_nonce == INVALID_NONCE - 1
    client = NoiseTransport(K1, K2, send_nonce=INVALID_NONCE - 2)
    assert len(client.encrypt(b"x" * 4078)) == 4096 + 20


def test_receive_nonce_exhaustion():
    server = NoiseTransport(K2, K1, receive_nonce=INVALID_NONCE)
    ct = ChaCha20Poly1305(K1).encrypt(be(INVALID_NONCE), b"never", None)
    with pytest.raises(NonceExhausted) as info:
        server.receive_data(b"\x04" + len(ct).to_bytes(2, "big") + ct)
    assert info.value.direction == "receive"
    with pytest.raises(TransportClosed):
        server.receive_data(b"")


def test_all_errors_are_noise_errors():
    for cls in (DecryptError, FrameTooLargeError, RecordTypeError, NonceExhausted, TransportClosed):
        assert issubclass(cls, NoiseError)


def test_encrypt_parts_is_encrypt_of_the_join():
    """The same records, byte for byte, however the plaintext is cut into parts (parts smaller
    and larger than a record, empty ones, memoryviews), and the counter ends where it would."""
    import random

    rng = random.Random(11)
    for trial in range(60):
        a, _ = pair(send_nonce=trial)
        b, _ = pair(send_nonce=trial)
        sizes = [rng.choice([0, 1, 9, 4076, 4077, 4078, 16384, rng.randrange(1, 40000)])
                 for _ in range(rng.randrange(1, 12))]
        data = bytes(rng.randrange(256) for _ in range(sum(sizes)))
        parts, at = [], 0
        for k, size in enumerate(sizes):
            chunk = data[at:at + size]
            parts.append(memoryview(chunk) if k % 2 else chunk)
            at += size
        assert a.encrypt_parts(parts) == b.encrypt(data), sizes
        assert a.send_nonce == b.send_nonce


def test_encrypt_parts_into_a_reused_buffer_is_encrypt_of_the_join():
    """Sealed into the start of a buffer holding old bytes, reused across writes: the same
    records as ``encrypt`` of the join, and only the returned length is written."""
    import random

    from app.core.noise.transport import sealed_len

    rng = random.Random(5)
    a, _ = pair()
    b, _ = pair()
    buf = bytearray(b"\xee" * 300_000)
    for _ in range(40):
        sizes = [rng.choice([0, 9, 4077, 16384, rng.randrange(1, 30000)]) for _ in range(rng.randrange(1, 10))]
        data = rng.randbytes(sum(sizes))
        parts, at = [], 0
        for size in sizes:
            parts.append(memoryview(data)[at:at + size])
            at += size
        n = a.encrypt_parts_into(parts, buf)
        want = b.encrypt(data)
        assert n == len(want) == sealed_len(len(data))
        assert bytes(buf[:n]) == want
        assert a.send_nonce == b.send_nonce


def test_encrypt_parts_into_a_short_buffer_changes_nothing():
    a, b = pair()
    with pytest.raises(ValueError):
        a.encrypt_parts_into([b"x" * 5000], bytearray(5000))
    assert a.send_nonce == 0
    assert b.receive_data(a.encrypt(b"next")) == [b"next"]
