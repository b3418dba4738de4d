"""Noise SymmetricState for Noise_IK_25519_ChaChaPoly_BLAKE2s (Noise spec section 5.2).

Tailscale's instantiation (PROTOCOL.md 2.3):

* ``h = ck = BLAKE2s-256(protocol name)``: the 33-byte name is longer than the 32-byte hash,
  so it is hashed rather than zero-padded;
* prologue = ``"Tailscale Control Protocol v" + decimal version``;
* HKDF(ck, ikm) with HMAC-BLAKE2s and empty info: ``temp = HMAC(ck, ikm)``,
  ``out1 = HMAC(temp, 0x01)``, ``out2 = HMAC(temp, out1 || 0x02)``;
* every handshake key from ``mix_key`` encrypts exactly one message, so its nonce is always
  zero; the key is forgotten once used;
* an all-zero X25519 output (low-order peer key) aborts the handshake.
"""

from __future__ import annotations

import hashlib
import hmac

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from .errors import HandshakeError

PROTOCOL_NAME = b"Noise_IK_25519_ChaChaPoly_BLAKE2s"
PROLOGUE_PREFIX = b"Tailscale Control Protocol v"
HASH_LEN = 32
_ZERO_NONCE = bytes(12)
_ZERO_DH = bytes(32)
_INITIAL_H = hashlib.blake2s(PROTOCOL_NAME).digest()


def prologue(version: int) -> bytes:
    """The prologue both sides mix in: binds the cleartext version in the initiation header."""
    return PROLOGUE_PREFIX + str(version).encode("ascii")


def hmac_blake2s(key: bytes, data: bytes) -> bytes:
    return hmac.digest(key, data, "blake2s")


def hkdf(chaining_key: bytes, ikm: bytes) -> tuple[bytes, bytes]:
    """Noise HKDF with two outputs."""
    temp = hmac_blake2s(chaining_key, ikm)
    out1 = hmac_blake2s(temp, b"\x01")
    out2 = hmac_blake2s(temp, out1 + b"\x02")
    return out1, out2


def private_key(raw: bytes) -> X25519PrivateKey:
    if len(raw) != 32:
        raise ValueError("an X25519 private key has 32 bytes")
    return X25519PrivateKey.from_private_bytes(raw)


def public_bytes(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


def dh(private: X25519PrivateKey, public: bytes, what: str) -> bytes:
    """X25519, refusing the all-zero output that a low-order public key produces."""
    try:
        shared = private.exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError:  # cryptography refuses an all-zero result itself
        raise HandshakeError(f"computing {what}: low-order public key") from None
    if shared == _ZERO_DH:  # belt and braces, should the backend ever stop checking
        raise HandshakeError(f"computing {what}: low-order public key")
    return shared


class SymmetricState:
    """h (transcript hash), ck (chaining key) and the single-use handshake key k."""

    __slots__ = ("_k", "_split", "ck", "h")

    def __init__(self) -> None:
        self.h = _INITIAL_H
        self.ck = _INITIAL_H
        self._k: bytes | None = None
        self._split = False

    def mix_hash(self, data: bytes) -> None:
        self._check_open()
        self.h = hashlib.blake2s(self.h + data).digest()

    def mix_key(self, ikm: bytes) -> None:
        self._check_open()
        self.ck, self._k = hkdf(self.ck, ikm)

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        ciphertext = ChaCha20Poly1305(self._take_key()).encrypt(_ZERO_NONCE, plaintext, self.h)
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext: bytes, what: str) -> bytes:
        try:
            plaintext = ChaCha20Poly1305(self._take_key()).decrypt(_ZERO_NONCE, ciphertext, self.h)
        except InvalidTag:
            raise HandshakeError(f"decrypting {what} failed") from None
        self.mix_hash(ciphertext)
        return plaintext

    def split(self) -> tuple[bytes, bytes]:
        """(k1, k2): the initiator sends with k1, the responder with k2. Ends the handshake."""
        self._check_open()
        self._split = True
        self._k = None
        return hkdf(self.ck, b"")

    def _take_key(self) -> bytes:
        self._check_open()
        k, self._k = self._k, None
        if k is None:  # a handshake key is used once; IK never encrypts before a mix_key
            raise RuntimeError("no handshake key: mix_key must precede each encryption")
        return k

    def _check_open(self) -> None:
        if self._split:
            raise RuntimeError("symmetric state used after split")
