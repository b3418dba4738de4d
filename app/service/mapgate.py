"""A bound on full maps in flight: built and not yet taken by the socket.

A full map is ~130 bytes per peer (1.3 MB at 10,000 nodes) and stays in memory until the
client's socket takes it. When every node reconnects at once (a restart storm) thousands of
sessions would otherwise each build theirs and wait on a full socket together: gigabytes held,
and every client served a little at a time instead of one after another. The gate lets
``limit`` maps through at once, first come first served; a slot is given back after ``hold``
seconds even if that client has not taken its map yet, so a stalled client cannot stall
anyone else's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

LIMIT = 32
HOLD = 2.0


class MapGate:
    def __init__(self, limit: int = LIMIT, hold: float = HOLD) -> None:
        self.limit = limit
        self.hold = hold
        self._slots = asyncio.Semaphore(limit)
        self.in_flight = 0
        self.peak = 0

    async def run(self, send: Callable[[], Awaitable[None]]) -> None:
        """Await ``send()`` (build and write one full map) within a slot."""
        await self._slots.acquire()
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        given_back = False

        def give_back() -> None:
            nonlocal given_back
            if not given_back:
                given_back = True
                self.in_flight -= 1
                self._slots.release()

        timer = asyncio.get_running_loop().call_later(self.hold, give_back)
        try:
            await send()
        finally:
            timer.cancel()
            give_back()
