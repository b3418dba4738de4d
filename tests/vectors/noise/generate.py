"""Regenerate ts2021_ik.json from an independent Noise implementation.

    .venv/bin/python tests/vectors/noise/generate.py

The handshake bytes, handshake hash and split keys come from the PyPI ``noiseprotocol``
package (not from app.core.noise). TS2021 framing is added here by hand: the 5-byte
initiation header and the 3-byte response/record headers.

Transport records: noiseprotocol's transport uses the Noise spec nonce (counter
little-endian), TS2021 uses big-endian. For counter 0 both nonces are 12 zero bytes, so the
first record per direction comes straight from noiseprotocol's ``encrypt``; records at
other counters are sealed here with ``cryptography``'s ChaCha20-Poly1305, using
noiseprotocol's split keys and a nonce built by hand.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from noise.connection import Keypair, NoiseConnection

OUT = Path(__file__).with_name("ts2021_ik.json")
NAME = b"Noise_IK_25519_ChaChaPoly_BLAKE2s"


def key(label: str) -> bytes:
    return hashlib.blake2s(label.encode()).digest()


def pub(private: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()


def be_nonce(counter: int) -> bytes:
    return bytes(4) + counter.to_bytes(8, "big")


def record(k: bytes, counter: int, plaintext: bytes) -> bytes:
    ct = ChaCha20Poly1305(k).encrypt(be_nonce(counter), plaintext, None)
    return bytes([0x04]) + len(ct).to_bytes(2, "big") + ct


def case(name: str, version: int) -> dict:
    server_static = key(f"{name}/server static")
    machine = key(f"{name}/machine")
    client_eph = key(f"{name}/client ephemeral")
    server_eph = key(f"{name}/server ephemeral")
    prologue = b"Tailscale Control Protocol v" + str(version).encode()

    client = NoiseConnection.from_name(NAME)
    client.set_as_initiator()
    client.set_prologue(prologue)
    client.set_keypair_from_private_bytes(Keypair.STATIC, machine)
    client.set_keypair_from_public_bytes(Keypair.REMOTE_STATIC, pub(server_static))
    server = NoiseConnection.from_name(NAME)
    server.set_as_responder()
    server.set_prologue(prologue)
    server.set_keypair_from_private_bytes(Keypair.STATIC, server_static)
    with warnings.catch_warnings():  # noiseprotocol warns when ephemeral keys are fixed
        warnings.simplefilter("ignore")
        client.set_keypair_from_private_bytes(Keypair.EPHEMERAL, client_eph)
        server.set_keypair_from_private_bytes(Keypair.EPHEMERAL, server_eph)
        client.start_handshake()
        server.start_handshake()

    msg1 = bytes(client.write_message())
    assert len(msg1) == 96
    server.read_message(msg1)
    msg2 = bytes(server.write_message())
    assert len(msg2) == 48
    client.read_message(msg2)
    assert client.get_handshake_hash() == server.get_handshake_hash()

    initiation = version.to_bytes(2, "big") + b"\x01" + (96).to_bytes(2, "big") + msg1
    response = b"\x02" + (48).to_bytes(2, "big") + msg2
    k1 = client.noise_protocol.cipher_state_encrypt.k
    k2 = client.noise_protocol.cipher_state_decrypt.k

    challenge = key(f"{name}/challenge")
    early = json.dumps({"nodeKeyChallenge": "chalpub:" + pub(challenge).hex()}, separators=(",", ":"))
    early_plain = b"\xff\xff\xffTS" + len(early).to_bytes(4, "big") + early.encode()
    h2_preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

    records = []
    for direction, conn, k, plaintext in (
        ("client_to_server", client, k1, h2_preface),
        ("server_to_client", server, k2, early_plain),
    ):
        first = conn.encrypt(plaintext)  # counter 0: LE and BE nonces coincide
        records.append({"direction": direction, "counter": 0, "plaintext": plaintext.hex(),
                        "record": (b"\x04" + len(first).to_bytes(2, "big") + first).hex()})
        for counter, text in ((1, b"second record"), (0x0102030405060708, b""),
                              (2**64 - 2, b"last usable counter")):
            records.append({"direction": direction, "counter": counter, "plaintext": text.hex(),
                            "record": record(k, counter, text).hex()})

    return {
        "name": name,
        "version": version,
        "prologue": prologue.decode(),
        "server_static_private": server_static.hex(),
        "server_static_public": pub(server_static).hex(),
        "machine_private": machine.hex(),
        "machine_public": pub(machine).hex(),
        "client_ephemeral_private": client_eph.hex(),
        "server_ephemeral_private": server_eph.hex(),
        "challenge_public": pub(challenge).hex(),
        "initiation": initiation.hex(),
        "response": response.hex(),
        "handshake_hash": bytes(client.get_handshake_hash()).hex(),
        "k1": bytes(k1).hex(),
        "k2": bytes(k2).hex(),
        "records": records,
    }


def main() -> None:
    doc = {
        "source": "noiseprotocol 0.3.1 (handshake, split keys, counter-0 records) + cryptography "
                  "ChaCha20Poly1305 with big-endian nonces (other records); see generate.py",
        "cases": [case("capver130", 130), case("capver1", 1), case("capver65535", 65535)],
    }
    OUT.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
