"""One buffer that large writes of every Noise connection are sealed into, reused.

A full map at 10,000 nodes is 1.3 MB; sealing it into fresh memory for each of the 10,000 nodes
of a restart storm cost page faults on every write (a join of the records was 12% of the
storm's server CPU). Writes are synchronous, so one buffer serves every connection: seal into
it, hand it to the socket transport, reuse it for the next write - provided the transport did
not keep a reference to it.

asyncio's socket transport sends what the kernel takes at once and *copies* the rest into its
own buffer up to Python 3.11 (``bytearray.extend``); from 3.12 on it keeps the object handed to
``write``. So the buffer is given up (a new one is made for the next write) whenever a write
left some of it buffered in a transport not known to copy (TLS, 3.12+, anything else).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from typing import Any

from app.core.noise import NoiseTransport
from app.core.noise.transport import sealed_len

SEAL_IN_PLACE = 64 * 1024    # writes at least this large go through the shared buffer

_COPIES: frozenset[type] = frozenset()
if sys.version_info < (3, 12):
    _COPIES = frozenset({asyncio.selector_events._SelectorSocketTransport})  # type: ignore[attr-defined]


class SealBuffer:
    def __init__(self, copies: frozenset[type] = _COPIES) -> None:
        self._buf = bytearray()
        self._copies = copies
        self.given_up = 0          # times a transport kept the buffer (a new one was made)

    def write(self, noise: NoiseTransport, transport: Any, parts: Sequence[bytes | memoryview]) -> None:
        """Seal ``parts`` (their concatenation) into records and write them to ``transport``."""
        size = sum(map(len, parts))
        if size < SEAL_IN_PLACE:
            transport.write(noise.encrypt_parts(parts))
            return
        need = sealed_len(size)
        if len(self._buf) < need:
            self._buf = bytearray(need + need // 8)
        buf = self._buf
        n = noise.encrypt_parts_into(parts, buf)
        before = transport.get_write_buffer_size()
        transport.write(memoryview(buf)[:n])
        if transport.get_write_buffer_size() > before and type(transport) not in self._copies:
            self._buf = bytearray()
            self.given_up += 1
