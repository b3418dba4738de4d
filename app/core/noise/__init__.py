"""TS2021: Tailscale's Noise IK transport for the control protocol (PROTOCOL.md 2).

Protocol flow::

    client                                             server
    GET /key?v=130  ------------------------------->   {"publicKey": "mkey:<server static>"}
    Initiator(machine, server_pub, 130, eph)
      .initiation()  101 B  ---- POST /ts2021 ----->   (X-Tailscale-Handshake: base64)
                                                       respond(static, init, eph) -> HandshakeResult
                     <------ HTTP 101 + 51 B -------   .response    (or error_frame() on HandshakeError)
    .finish(reply) -> NoiseTransport (tx k1, rx k2)    .transport   (tx k2, rx k1)
                     <------ records 0x04 ---------    encrypt(early_payload(chal))   optional
                     <======= records 0x04 ========>   HTTP/2 with prior knowledge, both ways

Everything here is sans-I/O: bytes in, bytes out; ephemeral keys come from the caller.
"""

from .early import EARLY_PAYLOAD_MAGIC, EarlyNoise, early_payload, split_early_payload
from .errors import (
    DecryptError,
    EarlyPayloadError,
    FrameTooLargeError,
    HandshakeError,
    NoiseError,
    NonceExhausted,
    RecordTypeError,
    ServerRefusedError,
    TransportClosed,
)
from .handshake import HandshakeResult, Initiator, Responder, respond
from .messages import (
    INITIATION_LEN,
    MAX_FRAME_LEN,
    MAX_PLAINTEXT_LEN,
    RESPONSE_LEN,
    encode_error,
    reply_size,
)
from .symmetric import PROTOCOL_NAME, prologue
from .transport import NoiseTransport

__all__ = [
    "EARLY_PAYLOAD_MAGIC",
    "INITIATION_LEN",
    "MAX_FRAME_LEN",
    "MAX_PLAINTEXT_LEN",
    "PROTOCOL_NAME",
    "RESPONSE_LEN",
    "DecryptError",
    "EarlyNoise",
    "EarlyPayloadError",
    "FrameTooLargeError",
    "HandshakeError",
    "HandshakeResult",
    "Initiator",
    "NoiseError",
    "NoiseTransport",
    "NonceExhausted",
    "RecordTypeError",
    "Responder",
    "ServerRefusedError",
    "TransportClosed",
    "early_payload",
    "encode_error",
    "prologue",
    "reply_size",
    "respond",
    "split_early_payload",
]
