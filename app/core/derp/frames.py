"""DERP frame codec, login boxes and an incremental frame parser (PROTOCOL.md 6.2).

Every frame on the wire::

    1B  frame type
    4B  payload length, big endian (excludes these 5 header bytes)
    NB  payload

Protocol flow::

    login:   server -> ServerKey;  client -> ClientInfo;  server -> ServerInfo
    steady:  client -> SendPacket;  server -> RecvPacket to the destination
             server -> KeepAlive every 60 s (+ jitter); either side Ping -> Pong

Payload layouts are written next to each codec below. Keys are raw 32-byte Curve25519 public
keys ("node keys"). ClientInfo/ServerInfo bodies are JSON sealed in a NaCl box
(Curve25519 + XSalsa20-Poly1305) from the sender's private key to the receiver's public key;
the wire form of a box is ``nonce(24) || ciphertext``.
"""

from __future__ import annotations

import ipaddress
import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum, IntFlag
from typing import NamedTuple

from nacl.exceptions import CryptoError
from nacl.public import Box, PrivateKey, PublicKey

from app.core import jsonsafe

from .errors import FrameError, FrameTooLarge, HandshakeError

MAGIC = "DERP🔑".encode()  # 44 45 52 50 f0 9f 94 91
PROTOCOL_VERSION = 2
KEY_LEN = 32
NONCE_LEN = 24
HEADER_LEN = 5
MAX_PACKET_SIZE = 64 << 10  # largest relayed packet, excluding the 32-byte key
MAX_CLIENT_INFO_LEN = 256 << 10  # the server reads untrusted JSON: keep it small
MAX_FRAME_LEN = 1 << 20  # the largest frame either side accepts at all
MAX_PING_LEN = 1000  # 8 bytes are used; a little room for future use, not more
KEEPALIVE_SECONDS = 60.0
DISCO_MAGIC = "TS💬".encode()  # 54 53 f0 9f 92 ac
DISCO_MIN_LEN = len(DISCO_MAGIC) + KEY_LEN + NONCE_LEN  # magic + sender disco key + nonce

FRAME_HEADER = struct.Struct(">BI")


class FrameType(IntEnum):
    SERVER_KEY = 0x01  # S->C  8B magic + 32B server key (+ future bytes)
    CLIENT_INFO = 0x02  # C->S  32B client key + 24B nonce + box(JSON ClientInfo)
    SERVER_INFO = 0x03  # S->C  24B nonce + box(JSON ServerInfo)
    SEND_PACKET = 0x04  # C->S  32B destination key + packet
    RECV_PACKET = 0x05  # S->C  32B source key + packet (protocol v2)
    KEEP_ALIVE = 0x06  # S->C  empty
    NOTE_PREFERRED = 0x07  # C->S  1B: 0x01 this is my home DERP, 0x00 not
    PEER_GONE = 0x08  # S->C  32B peer key + 1B reason
    PEER_PRESENT = 0x09  # S->C  32B key + 16B IP + 2B port + 1B flags (watchers only)
    FORWARD_PACKET = 0x0A  # mesh->S  32B source key + 32B destination key + packet
    WATCH_CONNS = 0x10  # C->S  empty; mesh key required
    CLOSE_PEER = 0x11  # C->S  32B key of the client to disconnect; mesh key required
    PING = 0x12  # both  8B opaque
    PONG = 0x13  # both  the 8B of the ping answered
    HEALTH = 0x14  # S->C  UTF-8 problem text; empty = healthy again
    RESTARTING = 0x15  # S->C  u32 reconnect-in ms + u32 try-for ms


class PeerGoneReason(IntEnum):
    DISCONNECTED = 0x00  # the peer was here and left
    NOT_HERE = 0x01  # the server does not know the peer


class PeerPresentFlags(IntFlag):
    REGULAR = 0x01
    MESH_PEER = 0x02
    PROBER = 0x04
    NOT_IDEAL = 0x08  # the client is not on its region's first (ideal) node


_KNOWN_TYPES: dict[int, FrameType] = {int(t): t for t in FrameType}


class Frame(NamedTuple):
    type: FrameType
    payload: bytes


def is_disco(packet: bytes) -> bool:
    """Whether a relayed packet is a disco message (these get PeerGone replies and priority)."""
    return len(packet) >= DISCO_MIN_LEN and packet.startswith(DISCO_MAGIC)


# --- encoders -------------------------------------------------------------------------------


def encode_frame(frame_type: int, payload: bytes = b"") -> bytes:
    return FRAME_HEADER.pack(frame_type, len(payload)) + payload


def server_key(public_key: bytes) -> bytes:
    """ServerKey: ``8B magic | 32B server public key``."""
    return encode_frame(FrameType.SERVER_KEY, MAGIC + _key(public_key))


def send_packet(dst: bytes, packet: bytes) -> bytes:
    """SendPacket: ``32B destination key | packet``."""
    return b"".join((FRAME_HEADER.pack(FrameType.SEND_PACKET, KEY_LEN + len(packet)), dst, packet))


def recv_packet(src: bytes, packet: bytes) -> bytes:
    """RecvPacket (v2): ``32B source key | packet``."""
    return b"".join((FRAME_HEADER.pack(FrameType.RECV_PACKET, KEY_LEN + len(packet)), src, packet))


def forward_packet(src: bytes, dst: bytes, packet: bytes) -> bytes:
    """ForwardPacket: ``32B source key | 32B destination key | packet``."""
    size = 2 * KEY_LEN + len(packet)
    return b"".join((FRAME_HEADER.pack(FrameType.FORWARD_PACKET, size), src, dst, packet))


KEEP_ALIVE_FRAME = encode_frame(FrameType.KEEP_ALIVE)
WATCH_CONNS_FRAME = encode_frame(FrameType.WATCH_CONNS)


def note_preferred(preferred: bool) -> bytes:
    """NotePreferred: ``1B 0x01|0x00``."""
    return encode_frame(FrameType.NOTE_PREFERRED, b"\x01" if preferred else b"\x00")


def peer_gone(peer: bytes, reason: PeerGoneReason) -> bytes:
    """PeerGone: ``32B peer key | 1B reason``."""
    return encode_frame(FrameType.PEER_GONE, _key(peer) + bytes((reason,)))


def peer_present(peer: bytes, ip: str | None, port: int, flags: int) -> bytes:
    """PeerPresent: ``32B key | 16B IP (IPv4 as v4-mapped IPv6) | 2B BE port | 1B flags``.

    An unknown address is sent as 16 zero bytes and port 0.
    """
    raw = bytes(16)
    if ip:
        addr = ipaddress.ip_address(ip)
        if addr.version == 4:
            addr = ipaddress.IPv6Address(b"\x00" * 10 + b"\xff\xff" + addr.packed)
        raw = addr.packed
    return encode_frame(FrameType.PEER_PRESENT, _key(peer) + raw + struct.pack(">HB", port, flags))


def close_peer(peer: bytes) -> bytes:
    """ClosePeer: ``32B key of the client to disconnect``."""
    return encode_frame(FrameType.CLOSE_PEER, _key(peer))


def ping(data: bytes) -> bytes:
    """Ping: ``8B opaque``."""
    return encode_frame(FrameType.PING, _eight(data))


def pong(data: bytes) -> bytes:
    """Pong: ``the 8B of the ping``."""
    return encode_frame(FrameType.PONG, _eight(data))


def health(problem: str) -> bytes:
    """Health: UTF-8 text; empty means the earlier problem is gone."""
    return encode_frame(FrameType.HEALTH, problem.encode())


def restarting(reconnect_in_ms: int, try_for_ms: int) -> bytes:
    """Restarting: ``u32 BE reconnect-in ms | u32 BE try-for ms``."""
    return encode_frame(FrameType.RESTARTING, struct.pack(">II", reconnect_in_ms, try_for_ms))


def _key(key: bytes) -> bytes:
    if len(key) != KEY_LEN:
        raise ValueError("a DERP key has 32 bytes")
    return bytes(key)


def _eight(data: bytes) -> bytes:
    if len(data) != 8:
        raise ValueError("ping data has 8 bytes")
    return bytes(data)


# --- decoders (payload -> values); FrameError on a size the protocol forbids ---------------


def parse_server_key(payload: bytes) -> bytes:
    if len(payload) < len(MAGIC) + KEY_LEN or not payload.startswith(MAGIC):
        raise HandshakeError("invalid server greeting")
    return payload[len(MAGIC) : len(MAGIC) + KEY_LEN]


def parse_send_packet(payload: bytes) -> tuple[bytes, bytes]:
    """-> (destination key, packet)."""
    return _split_key_packet(FrameType.SEND_PACKET, payload)


def parse_recv_packet(payload: bytes) -> tuple[bytes, bytes]:
    """-> (source key, packet)."""
    return _split_key_packet(FrameType.RECV_PACKET, payload)


def parse_forward_packet(payload: bytes) -> tuple[bytes, bytes, bytes]:
    """-> (source key, destination key, packet)."""
    if len(payload) < 2 * KEY_LEN:
        raise FrameError(FrameType.FORWARD_PACKET, "short frame")
    if len(payload) - 2 * KEY_LEN > MAX_PACKET_SIZE:
        raise FrameError(FrameType.FORWARD_PACKET, "packet too large")
    return payload[:KEY_LEN], payload[KEY_LEN : 2 * KEY_LEN], payload[2 * KEY_LEN :]


def _split_key_packet(frame_type: FrameType, payload: bytes) -> tuple[bytes, bytes]:
    if len(payload) < KEY_LEN:
        raise FrameError(frame_type, "short frame")
    if len(payload) - KEY_LEN > MAX_PACKET_SIZE:
        raise FrameError(frame_type, "packet too large")
    return payload[:KEY_LEN], payload[KEY_LEN:]


def parse_peer_gone(payload: bytes) -> tuple[bytes, int]:
    """-> (peer key, reason). A frame without the reason byte (old servers) means Disconnected."""
    if len(payload) < KEY_LEN:
        raise FrameError(FrameType.PEER_GONE, "short frame")
    reason = payload[KEY_LEN] if len(payload) > KEY_LEN else PeerGoneReason.DISCONNECTED
    return payload[:KEY_LEN], reason


def parse_peer_present(payload: bytes) -> tuple[bytes, str | None, int, int]:
    """-> (peer key, IP text or None, port, flags); IPv4-mapped addresses are unmapped."""
    if len(payload) < KEY_LEN:
        raise FrameError(FrameType.PEER_PRESENT, "short frame")
    ip: str | None = None
    port = flags = 0
    if len(payload) >= KEY_LEN + 18:
        addr = ipaddress.IPv6Address(payload[KEY_LEN : KEY_LEN + 16])
        if addr != ipaddress.IPv6Address(0):
            ip = str(addr.ipv4_mapped or addr)
        (port,) = struct.unpack_from(">H", payload, KEY_LEN + 16)
    if len(payload) >= KEY_LEN + 19:
        flags = payload[KEY_LEN + 18]
    return payload[:KEY_LEN], ip, port, flags


def parse_ping(payload: bytes) -> bytes:
    """-> the 8 bytes to echo. Longer pings are allowed up to MAX_PING_LEN; extra is ignored."""
    if len(payload) < 8:
        raise FrameError(FrameType.PING, "short ping")
    if len(payload) > MAX_PING_LEN:
        raise FrameError(FrameType.PING, "ping body too large")
    return payload[:8]


def parse_note_preferred(payload: bytes) -> bool:
    if len(payload) != 1:
        raise FrameError(FrameType.NOTE_PREFERRED, "wrong size")
    return payload[0] != 0


def parse_restarting(payload: bytes) -> tuple[int, int]:
    if len(payload) < 8:
        raise FrameError(FrameType.RESTARTING, "short frame")
    return struct.unpack_from(">II", payload)


# --- login: ClientInfo / ServerInfo ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """The JSON a client seals into its ClientInfo frame.

    Wire names mix cases: ``{"meshKey":"<64 hex>"?, "version":2, "CanAckPings":true,
    "IsProber":true?, "AppName":"…"?}``. Like Go's decoder we match names case-insensitively,
    ignore unknown names and treat null/absent as zero, but a wrong type is an error.
    """

    version: int = PROTOCOL_VERSION
    can_ack_pings: bool = True
    mesh_key: bytes | None = None  # 32 raw bytes
    is_prober: bool = False
    app_name: str = ""

    def to_json(self) -> bytes:
        out: dict[str, object] = {}
        if self.mesh_key:
            out["meshKey"] = self.mesh_key.hex()
        if self.version:
            out["version"] = self.version
        out["CanAckPings"] = self.can_ack_pings
        if self.is_prober:
            out["IsProber"] = True
        if self.app_name:
            out["AppName"] = self.app_name
        return json.dumps(out, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> ClientInfo:
        try:
            obj = jsonsafe.loads(raw)
        except jsonsafe.JSONError as exc:
            raise HandshakeError(f"client info is not usable JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise HandshakeError("client info is not a JSON object")
        fields = {str(k).lower(): v for k, v in obj.items()}
        version = _typed(fields.get("version"), int, 0, "version")
        mesh_hex = _typed(fields.get("meshkey"), str, "", "meshKey")
        mesh_key = None
        if mesh_hex:
            try:
                mesh_key = bytes.fromhex(mesh_hex)
            except ValueError:
                raise HandshakeError("meshKey is not hex") from None
            if len(mesh_key) != KEY_LEN:
                raise HandshakeError("meshKey must have 32 bytes")
        return cls(
            version=version,
            can_ack_pings=_typed(fields.get("canackpings"), bool, False, "CanAckPings"),
            mesh_key=mesh_key,
            is_prober=_typed(fields.get("isprober"), bool, False, "IsProber"),
            app_name=_typed(fields.get("appname"), str, "", "AppName"),
        )


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """The JSON sealed into ServerInfo: ``{"version":2}`` plus optional token-bucket hints."""

    version: int = PROTOCOL_VERSION
    token_bucket_bytes_per_second: int = 0
    token_bucket_bytes_burst: int = 0

    def to_json(self) -> bytes:
        out: dict[str, int] = {}
        if self.version:
            out["version"] = self.version
        if self.token_bucket_bytes_per_second:
            out["TokenBucketBytesPerSecond"] = self.token_bucket_bytes_per_second
        if self.token_bucket_bytes_burst:
            out["TokenBucketBytesBurst"] = self.token_bucket_bytes_burst
        return json.dumps(out, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> ServerInfo:
        try:
            obj = jsonsafe.loads(raw)
        except jsonsafe.JSONError:
            raise HandshakeError("server info is not JSON") from None
        if not isinstance(obj, dict):
            raise HandshakeError("server info is not a JSON object")
        fields = {str(k).lower(): v for k, v in obj.items()}
        return cls(
            version=_typed(fields.get("version"), int, 0, "version"),
            token_bucket_bytes_per_second=_typed(
                fields.get("tokenbucketbytespersecond"), int, 0, "TokenBucketBytesPerSecond"
            ),
            token_bucket_bytes_burst=_typed(
                fields.get("tokenbucketbytesburst"), int, 0, "TokenBucketBytesBurst"
            ),
        )


def _typed(value: object, kind: type, default: object, name: str):
    if value is None:
        return default
    # bool is an int subclass in Python but not in JSON/Go.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise HandshakeError(f"{name} has the wrong JSON type")
    return value


def public_key_of(private_key: bytes) -> bytes:
    return bytes(PrivateKey(private_key).public_key)


def seal(private_key: bytes, peer_public: bytes, message: bytes, nonce: bytes | None = None) -> bytes:
    """NaCl box of ``message`` from us to the peer: ``nonce(24) || ciphertext``.

    Without ``nonce`` PyNaCl draws a random one (the only randomness in this module).
    """
    return bytes(Box(PrivateKey(private_key), PublicKey(peer_public)).encrypt(message, nonce))


def open_box(private_key: bytes, peer_public: bytes, sealed: bytes) -> bytes:
    if len(sealed) < NONCE_LEN + 16:
        raise HandshakeError("box too short")
    try:
        return Box(PrivateKey(private_key), PublicKey(peer_public)).decrypt(sealed)
    except CryptoError:
        raise HandshakeError("box does not open") from None


def client_info(
    client_private: bytes, server_public: bytes, info: ClientInfo | None = None, nonce: bytes | None = None
) -> bytes:
    """ClientInfo frame: ``32B client public key | 24B nonce | box(JSON)``."""
    body = seal(client_private, server_public, (info or ClientInfo()).to_json(), nonce)
    return encode_frame(FrameType.CLIENT_INFO, public_key_of(client_private) + body)


def open_client_info(server_private: bytes, payload: bytes) -> tuple[bytes, ClientInfo]:
    """-> (client public key, ClientInfo). HandshakeError unless the box opens and parses."""
    if len(payload) < KEY_LEN + NONCE_LEN:
        raise HandshakeError("short client info")
    if len(payload) > MAX_CLIENT_INFO_LEN:
        raise HandshakeError("long client info")
    client_public = payload[:KEY_LEN]
    return client_public, ClientInfo.from_json(open_box(server_private, client_public, payload[KEY_LEN:]))


def server_info(
    server_private: bytes, client_public: bytes, info: ServerInfo | None = None, nonce: bytes | None = None
) -> bytes:
    """ServerInfo frame: ``24B nonce | box(JSON)``."""
    body = seal(server_private, client_public, (info or ServerInfo()).to_json(), nonce)
    return encode_frame(FrameType.SERVER_INFO, body)


def open_server_info(client_private: bytes, server_public: bytes, payload: bytes) -> ServerInfo:
    if len(payload) < NONCE_LEN:
        raise HandshakeError("short server info")
    return ServerInfo.from_json(open_box(client_private, server_public, payload))


# --- incremental parser ---------------------------------------------------------------------

# What the server accepts from a client; types not listed are bounded by MAX_FRAME_LEN.
SERVER_LIMITS: Mapping[int, int] = {
    FrameType.CLIENT_INFO: MAX_CLIENT_INFO_LEN,
    FrameType.SEND_PACKET: KEY_LEN + MAX_PACKET_SIZE,
    FrameType.FORWARD_PACKET: 2 * KEY_LEN + MAX_PACKET_SIZE,
}


class FrameParser:
    """Bytes in, complete frames out.

    Partial frames are buffered (amortised linear cost however the bytes are split). A header
    announcing more than the limit for its type raises FrameTooLarge at once, so a peer cannot
    make us buffer more than one frame's worth. Frames of unknown types are skipped by length
    without being buffered.
    """

    __slots__ = ("_buf", "_limits", "_max", "_need", "_skip")

    def __init__(self, limits: Mapping[int, int] | None = None, max_length: int = MAX_FRAME_LEN) -> None:
        self._buf = bytearray()
        self._need = HEADER_LEN  # bytes _buf must hold before parsing is worth trying again
        self._skip = 0  # payload bytes of an unknown frame still to discard
        self._limits = {t: min(n, max_length) for t, n in (limits or {}).items()}
        self._max = max_length

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def receive_data(self, data: bytes) -> list[Frame]:
        if self._skip:
            if len(data) <= self._skip:
                self._skip -= len(data)
                return []
            data = data[self._skip :]
            self._skip = 0
        if self._buf:
            self._buf += data
            if len(self._buf) < self._need:
                return []
            data = bytes(self._buf)
            self._buf.clear()
        return self._parse(data)

    def _parse(self, data: bytes) -> list[Frame]:
        frames: list[Frame] = []
        known = _KNOWN_TYPES
        limits = self._limits
        unpack = FRAME_HEADER.unpack_from
        off = 0
        end = len(data)
        while end - off >= HEADER_LEN:
            code, size = unpack(data, off)
            limit = limits.get(code, self._max)
            if size > limit:
                raise FrameTooLarge(code, size, limit)
            start = off + HEADER_LEN
            ftype = known.get(code)
            if ftype is None:
                if end - start >= size:
                    off = start + size
                    continue
                self._skip = size - (end - start)
                return frames
            if end - start < size:
                self._need = HEADER_LEN + size
                break
            off = start + size
            frames.append(Frame(ftype, data[start:off]))
        else:
            self._need = HEADER_LEN
        if off < end:
            self._buf += data[off:] if off else data
        return frames
