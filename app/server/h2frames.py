"""HTTP/2 frames the server handles beside h2, on the hot paths of long-lived map streams.

Every frame starts with the same 9-byte header (RFC 9113 4.1)::

    +-----------------------------------------------+
    | length (24) | type (8) | flags (8)            |
    | R (1) | stream id (31)                        |
    | payload (length bytes)                        |
    +-----------------------------------------------+

Outgoing: DATA frames (type 0x0, RFC 9113 6.1) that do not end their stream, framed here (see
``H2Server.send_data``). Incoming: WINDOW_UPDATE (type 0x8, 6.9; payload R + 31-bit increment).
A Go client (tailscaled) returns credit each time it has read 4 KiB more of a response, so one
1.3 MB full map brings back dozens of records of WINDOW_UPDATE pairs; through h2 each one costs
a frame object, a debug repr, two state machines and an event. ``split`` applies the valid ones
to h2's send windows itself, exactly as h2 would (no other h2 state changes on them), and hands
everything else - the connection preface, other frames, and any WINDOW_UPDATE that h2 must
judge (zero increment, window overflow, unknown or closed stream, bad length) - to h2 as whole
frames, in order.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

import h2.connection
from h2.connection import ConnectionState
from h2.stream import StreamState

HEAD_LEN = 9
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
MAX_WINDOW = 2**31 - 1
_HEAD = struct.Struct(">IBI")   # (length << 8 | type), flags, R + stream id
_INCREMENT = struct.Struct(">I")
_WINDOW_UPDATE = 0x8
_CREDITED = frozenset({StreamState.OPEN, StreamState.HALF_CLOSED_REMOTE})


def data_frames(parts: list[memoryview], stream_id: int, max_frame: int) -> list[bytes | memoryview]:
    """DATA frames without flags carrying the concatenation of ``parts``: header, payload
    pieces, header, ... A frame's payload may span parts; no payload byte is copied."""
    out: list[bytes | memoryview] = []
    full_head = _HEAD.pack(max_frame << 8, 0, stream_id)
    room = 0                       # payload bytes the current frame still takes
    left = sum(map(len, parts))
    for view in parts:
        pos, end = 0, len(view)
        while pos < end:
            if not room:
                room = min(max_frame, left)
                out.append(full_head if room == max_frame else _HEAD.pack(room << 8, 0, stream_id))
            take = min(room, end - pos)
            out.append(view if take == end and not pos else view[pos:pos + take])
            pos += take
            room -= take
            left -= take
    return out


class Outgoing:
    """The bytes a response has still to send, held as the pieces they came in (a full map is
    a few large slices of shared cached frames, never joined)."""

    __slots__ = ("parts", "size")

    def __init__(self, data: bytes | memoryview | list[bytes | memoryview]) -> None:
        pieces = [data] if isinstance(data, (bytes, bytearray, memoryview)) else data
        self.parts = [memoryview(p) for p in reversed(pieces) if len(p)]   # next piece last
        self.size = sum(map(len, self.parts))

    def take(self, n: int) -> list[memoryview]:
        """The next ``n`` bytes (at most what is left) as views, in order."""
        out: list[memoryview] = []
        parts = self.parts
        n = min(n, self.size)
        self.size -= n
        while n:
            p = parts[-1]
            if len(p) <= n:
                out.append(parts.pop())
                n -= len(p)
            else:
                out.append(p[:n])
                parts[-1] = p[n:]
                n = 0
        return out


@dataclass(slots=True)
class Credit:
    """Send window given back on ``stream_id`` (0: the connection), already applied to h2."""
    stream_id: int


class Inbound:
    """Server side: splits decrypted bytes from a client into runs of whole frames for h2 and
    ``Credit`` items for the WINDOW_UPDATE frames applied here, in wire order."""

    def __init__(self, conn: h2.connection.H2Connection) -> None:
        self.conn = conn
        self._buf = bytearray()
        self._preface = len(PREFACE)   # preface bytes still to pass through untouched
        self._h2_only = False          # after a frame over the size limit: h2 judges the rest

    def split(self, data: bytes) -> Iterator[bytes | Credit]:
        """Whole frames for h2 (bytes) and applied credits, in wire order. A generator, to be
        consumed as it goes: a WINDOW_UPDATE is judged only after h2 has taken every frame
        before it (a SETTINGS or RST_STREAM there may change what it means)."""
        if self._h2_only:
            yield data
            return
        buf = self._buf
        buf += data
        pos = 0
        if self._preface:
            pos = min(self._preface, len(buf))
            self._preface -= pos
            yield bytes(buf[:pos])
        conn = self.conn
        size = len(buf)
        slow = pos
        while size - pos >= HEAD_LEN:
            type_len, _flags, sid = _HEAD.unpack_from(buf, pos)
            length = type_len >> 8
            if length > conn.max_inbound_frame_size:
                pos = size     # h2 refuses it (once whole); everything from here on is its
                self._h2_only = True
                break
            end = pos + HEAD_LEN + length
            if end > size:
                break
            if type_len & 0xFF == _WINDOW_UPDATE and length == 4:
                if slow < pos:
                    yield bytes(buf[slow:pos])
                    slow = pos
                if self._apply(sid, buf, pos + HEAD_LEN):
                    yield Credit(sid & MAX_WINDOW)
                    slow = end
            pos = end
        if slow < pos:
            yield bytes(buf[slow:pos])
        del buf[:pos]

    def _apply(self, sid: int, buf: bytearray, at: int) -> bool:
        """Apply one WINDOW_UPDATE if h2 would accept it without a word; else leave it to h2."""
        conn = self.conn
        if conn.state_machine.state is not ConnectionState.SERVER_OPEN:
            return False
        increment = _INCREMENT.unpack_from(buf, at)[0] & MAX_WINDOW
        if not increment:
            return False
        sid &= MAX_WINDOW
        if sid == 0:
            window = conn.outbound_flow_control_window + increment
            if window > MAX_WINDOW:
                return False
            conn.outbound_flow_control_window = window
            return True
        stream = conn.streams.get(sid)
        if stream is None or stream.state_machine.state not in _CREDITED:
            return False
        window = stream.outbound_flow_control_window + increment
        if window > MAX_WINDOW:
            return False
        stream.outbound_flow_control_window = window
        return True
