"""SymmetricState primitives: HKDF, protocol name, prologue, key single use, low-order DH."""

import hashlib

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from app.core.noise import HandshakeError
from app.core.noise.symmetric import (
    PROTOCOL_NAME,
    SymmetricState,
    dh,
    hkdf,
    private_key,
    prologue,
    public_bytes,
)


@pytest.mark.parametrize("ikm", [b"", b"\x01" * 32, bytes(range(77))])
def test_hkdf_matches_rfc5869_hkdf_with_blake2s(ikm):
    # Noise's HKDF is RFC 5869 HKDF with salt=ck and empty info; cryptography's HKDF is an
    # independent implementation of that.
    ck = hashlib.blake2s(b"chaining key").digest()
    want = HKDF(hashes.BLAKE2s(32), 64, salt=ck, info=b"").derive(ikm)
    out1, out2 = hkdf(ck, ikm)
    assert out1 + out2 == want


def test_protocol_name_and_initial_state():
    assert PROTOCOL_NAME == b"Noise_IK_25519_ChaChaPoly_BLAKE2s"
    assert len(PROTOCOL_NAME) == 33  # > 32: hashed, not padded
    s = SymmetricState()
    assert s.h == s.ck == hashlib.blake2s(PROTOCOL_NAME).digest()


def test_prologue_is_prefix_plus_decimal_version():
    assert prologue(130) == b"Tailscale Control Protocol v130"
    assert prologue(0) == b"Tailscale Control Protocol v0"
    assert prologue(65535) == b"Tailscale Control Protocol v65535"


def test_mix_hash_is_blake2s_of_h_and_data():
    s = SymmetricState()
    h0 = s.h
    s.mix_hash(b"data")
    assert s.h == hashlib.blake2s(h0 + b"data").digest()


def test_encrypt_and_decrypt_and_hash_agree_and_mix_the_ciphertext():
    a, b = SymmetricState(), SymmetricState()
    for s in (a, b):
        s.mix_key(b"\x07" * 32)
    h_before = a.h
    ct = a.encrypt_and_hash(b"machine key bytes")
    assert len(ct) == len(b"machine key bytes") + 16
    assert a.h == hashlib.blake2s(h_before + ct).digest()
    assert b.decrypt_and_hash(ct, "test") == b"machine key bytes"
    assert a.h == b.h


def test_decrypt_with_different_hash_fails():
    a, b = SymmetricState(), SymmetricState()
    for s in (a, b):
        s.mix_key(b"\x07" * 32)
    b.mix_hash(b"other transcript")  # the hash is the AD
    ct = a.encrypt_and_hash(b"")
    with pytest.raises(HandshakeError, match="decrypting tag failed"):
        b.decrypt_and_hash(ct, "tag")


def test_handshake_key_is_single_use():
    s = SymmetricState()
    s.mix_key(b"\x01" * 32)
    s.encrypt_and_hash(b"")
    with pytest.raises(RuntimeError):
        s.encrypt_and_hash(b"")


def test_state_is_dead_after_split():
    s = SymmetricState()
    s.mix_key(b"\x01" * 32)
    k1, k2 = s.split()
    assert len(k1) == len(k2) == 32 and k1 != k2
    with pytest.raises(RuntimeError):
        s.mix_hash(b"x")
    with pytest.raises(RuntimeError):
        s.split()


@pytest.mark.parametrize("low_order", [bytes(32), (1).to_bytes(32, "little")])
def test_dh_rejects_all_zero_output(low_order):
    with pytest.raises(HandshakeError, match="computing es: low-order public key"):
        dh(private_key(b"\x11" * 32), low_order, "es")


def test_dh_is_symmetric():
    a, b = private_key(b"\x11" * 32), private_key(b"\x22" * 32)
    assert dh(a, public_bytes(b), "x") == dh(b, public_bytes(a), "x")


def test_private_key_length_checked():
    with pytest.raises(ValueError):
        private_key(b"\x01" * 31)
