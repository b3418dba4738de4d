"""MapResponse framing on the long-poll stream (PROTOCOL.md 3.3).

    +----------------------+-----------------------------------------+
    | u32 little-endian N  | N bytes: zstd frame(s) of MapResponse   |
    +----------------------+-----------------------------------------+

v1.90 clients always zstd-decode a message, and accept several concatenated zstd frames,
so a message may be built from independently compressed pieces.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import zstandard

_LEN = struct.Struct("<I")
# Level 1 is what headscale uses ("fastest"); the map stream is CPU-bound, not link-bound.
_compressor = zstandard.ZstdCompressor(level=1)
_decompressor = zstandard.ZstdDecompressor()
MAX_MESSAGE = 1 << 30


def encode_json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def zstd_frame(payload: bytes) -> bytes:
    """One zstd frame of ``payload`` (unframed: no length prefix)."""
    return _compressor.compress(payload)


def frame(payload: bytes, compress: bool = True) -> bytes:
    """One framed message from raw JSON bytes."""
    body = _compressor.compress(payload) if compress else payload
    return _LEN.pack(len(body)) + body


def frame_obj(obj: Any, compress: bool = True) -> bytes:
    return frame(encode_json(obj), compress)


class FrameReader:
    """Client side: split a byte stream into decoded MapResponse dicts."""

    def __init__(self, compressed: bool = True) -> None:
        self._buf = bytearray()
        self.compressed = compressed

    def receive_data(self, data: bytes) -> list[dict]:
        self._buf += data
        out = []
        while len(self._buf) >= 4:
            (n,) = _LEN.unpack_from(self._buf)
            if n > MAX_MESSAGE:
                raise ValueError("map message too large")
            if len(self._buf) < 4 + n:
                break
            body = bytes(self._buf[4:4 + n])
            del self._buf[:4 + n]
            if self.compressed:
                body = decompress(body)
            out.append(json.loads(body))
        return out


def decompress(body: bytes) -> bytes:
    """Decode one or more concatenated zstd frames."""
    reader = _decompressor.stream_reader(body, read_across_frames=True)
    return reader.read()
