"""Noise IK handshake of TS2021, both roles, as pure computations (PROTOCOL.md 2.3).

Pattern (``s`` = server static key, known to the client from ``GET /key``)::

    <- s
    ...
    -> e, es, s, ss      initiation: client ephemeral, encrypted machine key, empty payload tag
    <- e, ee, se         response: server ephemeral, empty payload tag

Both sides first ``mix_hash(prologue(version))`` then ``mix_hash(server_static_public)``.
After ``split()`` the client sends with k1 and receives with k2; the server the reverse.
Ephemeral private keys are passed in by the caller (no randomness read here).
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from .errors import ServerRefusedError
from .messages import MSG_ERROR, Initiation, Response, decode_error
from .symmetric import SymmetricState, dh, private_key, prologue, public_bytes
from .transport import NoiseTransport


@dataclass(frozen=True, slots=True)
class HandshakeResult:
    """What the server learns from a good initiation."""

    response: bytes  # the 51-byte Response to write after the HTTP 101
    version: int  # protocol (capability) version from the initiation header
    machine_public: bytes  # the client's machine key, 32 raw bytes: its authenticated identity
    transport: NoiseTransport  # server side: sends with k2, receives with k1
    handshake_hash: bytes  # final h; binds application messages to this connection


class Responder:
    """The server role. Holds the static key so that its public half is computed once."""

    __slots__ = ("_static", "public")

    def __init__(self, static_private: bytes) -> None:
        self._static = private_key(static_private)
        self.public = public_bytes(self._static)

    def respond(self, initiation: bytes, ephemeral_private: bytes) -> HandshakeResult:
        """Check a 101-byte initiation and build the response.

        Raises HandshakeError; its ``error_frame()`` is what Tailscale's server would send.
        """
        init = Initiation.decode(initiation)
        s = SymmetricState()
        s.mix_hash(prologue(init.version))
        s.mix_hash(self.public)

        # -> e, es, s, ss
        s.mix_hash(init.ephemeral_public)
        s.mix_key(dh(self._static, init.ephemeral_public, "es"))
        machine_public = s.decrypt_and_hash(init.machine_key_ciphertext, "machine key")
        s.mix_key(dh(self._static, machine_public, "ss"))
        s.decrypt_and_hash(init.tag, "initiation tag")

        # <- e, ee, se
        ephemeral = private_key(ephemeral_private)
        ephemeral_public = public_bytes(ephemeral)
        s.mix_hash(ephemeral_public)
        s.mix_key(dh(ephemeral, init.ephemeral_public, "ee"))
        s.mix_key(dh(ephemeral, machine_public, "se"))
        tag = s.encrypt_and_hash(b"")

        handshake_hash = s.h
        k1, k2 = s.split()
        return HandshakeResult(
            response=Response(ephemeral_public, tag).encode(),
            version=init.version,
            machine_public=machine_public,
            transport=NoiseTransport(send_key=k2, receive_key=k1),
            handshake_hash=handshake_hash,
        )


def respond(server_static_private: bytes, initiation: bytes, ephemeral_private: bytes) -> HandshakeResult:
    """One-shot server handshake; see ``Responder.respond``."""
    return Responder(server_static_private).respond(initiation, ephemeral_private)


class Initiator:
    """The client role: ``initiation()`` to send, then ``finish(reply)`` once.

    The initiation is computed up front so that it can travel in the HTTP upgrade header
    before the connection exists.
    """

    __slots__ = ("_ephemeral", "_initiation", "_machine", "_state", "handshake_hash", "version")
    _state: SymmetricState | None

    def __init__(self, machine_private: bytes, server_public: bytes, version: int,
                 ephemeral_private: bytes) -> None:
        if not 0 <= version <= 0xFFFF:
            raise ValueError("protocol version is a u16")
        if len(server_public) != 32:
            raise ValueError("the server public key has 32 bytes")
        self.version = version
        self.handshake_hash: bytes | None = None
        self._machine = private_key(machine_private)
        self._ephemeral: X25519PrivateKey = private_key(ephemeral_private)
        s = self._state = SymmetricState()
        s.mix_hash(prologue(version))
        s.mix_hash(server_public)

        # -> e, es, s, ss
        ephemeral_public = public_bytes(self._ephemeral)
        s.mix_hash(ephemeral_public)
        s.mix_key(dh(self._ephemeral, server_public, "es"))
        machine_ct = s.encrypt_and_hash(public_bytes(self._machine))
        s.mix_key(dh(self._machine, server_public, "ss"))
        tag = s.encrypt_and_hash(b"")
        self._initiation = Initiation(version, ephemeral_public, machine_ct, tag).encode()

    def initiation(self) -> bytes:
        """The 101-byte initiation message."""
        return self._initiation

    def finish(self, reply: bytes) -> NoiseTransport:
        """Process the server's whole reply (see ``messages.reply_size``).

        Raises ServerRefusedError (carrying the server's text) for an Error message and
        HandshakeError for anything else that is wrong.
        """
        s, self._state = self._state, None  # one attempt only, even a failed one
        if s is None:
            raise RuntimeError("finish() was already called")
        if reply[:1] == bytes((MSG_ERROR,)):
            raise ServerRefusedError(decode_error(reply))
        resp = Response.decode(reply)

        # <- e, ee, se
        s.mix_hash(resp.ephemeral_public)
        s.mix_key(dh(self._ephemeral, resp.ephemeral_public, "ee"))
        s.mix_key(dh(self._machine, resp.ephemeral_public, "se"))
        s.decrypt_and_hash(resp.tag, "response tag")

        self.handshake_hash = s.h
        k1, k2 = s.split()
        return NoiseTransport(send_key=k1, receive_key=k2)

