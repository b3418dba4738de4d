"""Bounded per-client output queue of encoded frames.

A slow reader must never hold up the relay, so the relay never waits for a client: frames go
into this queue and the adapter's writer drains it when the socket accepts more. When a queue
is full the *oldest* frame of the same class is dropped (fresher packets matter more to
WireGuard, as in Tailscale's server). Two classes, each with its own bound:

* priority: control frames (ServerKey/Info, KeepAlive, Pong, PeerGone, PeerPresent) and disco
  packets, so a data flood cannot starve path discovery;
* data: every other RecvPacket.
"""

from __future__ import annotations

from collections import deque

DEFAULT_MAX_FRAMES = 128
DEFAULT_MAX_BYTES = 1 << 20
DEFAULT_MAX_PRIORITY_FRAMES = 256


class SendQueue:
    __slots__ = (
        "_data",
        "_data_bytes",
        "_prio",
        "dropped",
        "dropped_bytes",
        "max_bytes",
        "max_frames",
        "max_priority",
    )

    def __init__(
        self,
        max_frames: int = DEFAULT_MAX_FRAMES,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_priority: int = DEFAULT_MAX_PRIORITY_FRAMES,
    ) -> None:
        self._data: deque[bytes] = deque()
        self._prio: deque[bytes] = deque()
        self._data_bytes = 0
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        self.max_priority = max_priority
        self.dropped = 0
        self.dropped_bytes = 0

    def __len__(self) -> int:
        return len(self._data) + len(self._prio)

    @property
    def nbytes(self) -> int:
        return self._data_bytes + sum(map(len, self._prio))

    def push(self, frame: bytes, priority: bool = False) -> int:
        """Queue one encoded frame; return how many older frames were dropped to make room."""
        dropped = 0
        if priority:
            q = self._prio
            while len(q) >= self.max_priority:
                self._note_drop(q.popleft())
                dropped += 1
            q.append(frame)
            return dropped
        q = self._data
        self._data_bytes += len(frame)
        q.append(frame)
        while len(q) > self.max_frames or (self._data_bytes > self.max_bytes and len(q) > 1):
            old = q.popleft()
            self._data_bytes -= len(old)
            self._note_drop(old)
            dropped += 1
        return dropped

    def take(self) -> bytes:
        """Everything queued, priority frames first, as one buffer for a single write."""
        if not self._data and len(self._prio) == 1:
            return self._prio.popleft()
        out = b"".join(self._prio) + b"".join(self._data) if self._prio else b"".join(self._data)
        self._prio.clear()
        self._data.clear()
        self._data_bytes = 0
        return out

    def clear(self) -> int:
        """Forget everything (the client left); return how many frames were discarded."""
        n = len(self)
        for frame in self._data:
            self._note_drop(frame)
        for frame in self._prio:
            self._note_drop(frame)
        self._data.clear()
        self._prio.clear()
        self._data_bytes = 0
        return n

    def _note_drop(self, frame: bytes) -> None:
        self.dropped += 1
        self.dropped_bytes += len(frame)
