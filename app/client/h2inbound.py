"""Client side of HTTP/2: incoming bytes split between h2 and a direct path for DATA frames.

A map stream is mostly small DATA frames. Through h2 each one costs a frame object, a
debug repr, state-machine steps and an event (tens of microseconds), several times the
decryption of the record that carried it; the load generator in bench/ runs thousands of
clients on one core, so that cost was showing up as propagation latency. Here every frame
header is read (RFC 9113 4.1)::

    +-----------------------------------------------+
    | length (24) | type (8) | flags (8)            |
    | R (1) | stream id (31)                        |
    | payload (length bytes)                        |
    +-----------------------------------------------+

and a DATA frame without flags (no END_STREAM, no padding) on a stream h2 holds open is handed
over directly, with its flow-control credit returned by this module as tailscaled's Go HTTP/2
client returns it: after a read, a WINDOW_UPDATE for the connection and one for the stream
once 4 KiB or more of each is owed (x/net/http2 ``inflowMinRefresh``), so the server sees the
credit traffic of real clients (a few per full map, one per ~20 small deltas). Every other
frame - and every frame h2 must judge (a DATA frame on a closed stream, one too large) - is
fed to h2 whole and in order, so its events and errors are exactly what they would be.
h2 never sees the directly handled bytes: its inbound windows are only ever more generous
than the peer's, and the credit for them is accounted here instead.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import h2.connection
from h2.connection import ConnectionState
from h2.stream import StreamState

HEAD_LEN = 9
_HEAD = struct.Struct(">IBI")           # (length << 8 | type), flags, R + stream id
_WINDOW_UPDATE = struct.Struct(">IBII")  # header, then the 31-bit increment
_RECEIVING = frozenset({StreamState.OPEN, StreamState.HALF_CLOSED_LOCAL})
_DATA = 0x0
MIN_REFRESH = 4 << 10
_WINDOW_UPDATE_TYPE = 0x8


@dataclass(slots=True)
class Data:
    """The payload of one directly handled DATA frame."""
    stream_id: int
    data: bytes


class Inbound:
    """Splits decrypted HTTP/2 bytes from the server into h2 events and ``Data`` items, in
    wire order; credit for the Data is owed once ``refresh`` bytes have been read."""

    def __init__(self, conn: h2.connection.H2Connection, refresh: int = MIN_REFRESH) -> None:
        self.conn = conn
        self._buf = bytearray()
        self._refresh = refresh
        self._conn_unacked = 0
        self._stream_unacked: dict[int, int] = {}
        self._out = bytearray()          # WINDOW_UPDATE frames to send
        self._h2_only = False            # after a frame over the size limit: h2 judges the rest

    def receive(self, data: bytes) -> list[object]:
        """h2 events and Data items for the complete frames now available (raises what h2
        raises for a broken peer)."""
        if self._h2_only:
            return self.conn.receive_data(data)
        buf = self._buf
        if buf:
            buf += data
            src: bytes | bytearray = buf
        else:
            src = data
        out: list[object] = []
        conn = self.conn
        streams = conn.streams
        size = len(src)
        pos = slow = 0     # src[slow:pos]: whole frames for h2, not yet fed
        with memoryview(src) as view:
            while size - pos >= HEAD_LEN:
                type_len, flags, sid = _HEAD.unpack_from(src, pos)
                end = pos + HEAD_LEN + (type_len >> 8)
                if type_len >> 8 > conn.max_inbound_frame_size:
                    pos = size     # h2 refuses it (once whole): everything from here on is its
                    self._h2_only = True
                    break
                if end > size:
                    break
                if type_len & 0xFF == _DATA and not flags:
                    if slow < pos:
                        out += conn.receive_data(bytes(view[slow:pos]))
                        slow = pos
                    stream = streams.get(sid)
                    if stream is not None and stream.state_machine.state in _RECEIVING \
                            and conn.state_machine.state is ConnectionState.CLIENT_OPEN:
                        out.append(Data(sid, bytes(view[pos + HEAD_LEN:end])))
                        self._credit(sid, end - pos - HEAD_LEN)
                        slow = end
                pos = end
            if slow < pos:
                out += conn.receive_data(bytes(view[slow:pos]))
            rest = bytes(view[pos:]) if pos < size else b""
        self._buf = bytearray(rest)
        self._settle()
        return out

    def _credit(self, stream_id: int, n: int) -> None:
        self._conn_unacked += n
        self._stream_unacked[stream_id] = self._stream_unacked.get(stream_id, 0) + n

    def _settle(self) -> None:
        """After a read: WINDOW_UPDATE frames for what is owed past the refresh size."""
        head = 4 << 8 | _WINDOW_UPDATE_TYPE
        if self._conn_unacked >= self._refresh:
            self._out += _WINDOW_UPDATE.pack(head, 0, 0, self._conn_unacked)
            self._conn_unacked = 0
        for sid, owed in self._stream_unacked.items():
            if owed >= self._refresh:
                self._out += _WINDOW_UPDATE.pack(head, 0, sid, owed)
                self._stream_unacked[sid] = 0

    def forget(self, stream_id: int) -> None:
        """The stream is over: its window no longer matters (the connection's still does)."""
        self._stream_unacked.pop(stream_id, None)

    def data_to_send(self) -> bytes:
        """h2's pending frames, then the WINDOW_UPDATE frames owed for direct DATA."""
        data = self.conn.data_to_send()
        if self._out:
            data += self._out
            self._out = bytearray()
        return data
