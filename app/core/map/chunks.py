"""Full maps from pre-compressed pieces (PROTOCOL.md 3.3: a message may be several zstd frames).

The peers of a full map are cut into chunks by node id (``id >> CHUNK_BITS``); each chunk's
JSON (``{peer},{peer},...``) is compressed once into its own zstd frame and reused by every
viewer that sees exactly those peers in that id range, so a 10,000-peer map costs copying
~80 cached frames, not compressing megabytes. The message is:

    frame(head without its closing brace + ``,"Peers":[``)
    chunk frame, COMMA frame, chunk frame, ..., chunk frame
    frame(``]}``)

and decodes (all frames concatenated) to exactly the JSON a single-frame map would carry.
"""

from __future__ import annotations

import struct

from app.core.map.wire import encode_json, zstd_frame

CHUNK_BITS = 7                       # 128 node ids per chunk
_LEN = struct.Struct("<I")
COMMA = zstd_frame(b",")
TAIL = zstd_frame(b"]}")


def chunk_of(node_id: int) -> int:
    return node_id >> CHUNK_BITS


def chunk_frame(blobs: list[bytes]) -> bytes:
    """One zstd frame holding peer entries separated by commas (no brackets)."""
    return zstd_frame(b",".join(blobs))


def assemble_pieces(head: dict, peers_key: str, pieces: list[bytes | memoryview],
                    after: bytes = b"") -> list[bytes | memoryview]:
    """The framed message (length prefix included) of ``head`` plus pre-compressed peers, then
    ``after`` (another framed message, or nothing), as pieces that concatenate to those bytes.
    ``pieces`` concatenate to ``f1 COMMA f2 ... COMMA fn`` (nothing at all: no peers, and no
    peers key). A writer that takes pieces sends a full map as slices of the cached frames,
    never joined into one copy."""
    body = encode_json(head)
    if any(len(p) for p in pieces):
        parts = [zstd_frame(body[:-1] + b',"' + peers_key.encode() + b'":['), *pieces, TAIL]
    else:
        parts = [zstd_frame(body)]
    size = sum(map(len, parts))
    return [_LEN.pack(size), *parts, after]
