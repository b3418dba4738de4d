"""Map sessions and the batcher that feeds them.

One MapSession per streaming ``POST /machine/map``. The batcher collects Changes for one
tick (``tuning.batch_change_delay``), merges them, and asks each session for the delta its
node needs (app.service.deltas: sessions in the same position share one message built and
compressed once). While sessions are still writing the previous flush, the next one waits
(up to MAX_COALESCE), so a storm of joins or reconnects becomes a few larger deltas.

A session remembers what it last sent (peer view, filter, SSH policy, DNS), so a policy change
produces only real differences and nothing at all for nodes whose view did not change. The
peer view is a reference to a set shared by its visibility class, not a copy per session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from typing import Any

from app.core.tailcfg import go_time
from app.service.changes import Change
from app.service.deltas import Flush
from app.service.mapper import Mapper
from app.service.state import State

__all__ = ["QUEUE_LIMIT", "Batcher", "MapSession", "Mapper"]

log = logging.getLogger("headscale.map")

QUEUE_LIMIT = 64     # pending messages before a slow session is resynchronised with a full map


# While sessions still write the previous flush, changes keep accumulating (a restart storm
# turns into a few large deltas instead of one per tick per session), up to this long.
MAX_COALESCE = 2.0
# While full maps are being built faster than STORM_RATE per second (every node reconnecting
# after a restart), changes are held up to STORM_COALESCE: the new sessions' full maps carry the
# latest state anyway, and each flush costs a message to every connected session.
STORM_RATE = 50
STORM_MIN = 25          # a few sessions opening together are not a storm
# After a flush that queued S messages, the next waits at least S x PER_MESSAGE. Most
# messages are written during the flush itself (control_routes._DirectQueue: ~25 us each);
# the pause leaves the loop to what else waits (new sessions' full maps, requests) between
# back-to-back changes: 0.2 s after a flush to 10,000 sessions, nothing in a quiet tailnet.
# Sessions that could not take theirs at once are waited for by backlog() instead.
PER_MESSAGE = 20e-6
STORM_COALESCE = 5.0
# Presence alone (peers coming online, going offline) is worth less than the messages it costs:
# after a flush that queued S messages, a flush of nothing but presence waits S x
# PRESENCE_PER_MESSAGE (10,000 sessions: 10 s; 100: 0.1 s). Any other change goes out at the
# usual pace and carries the held presence with it. In a restart storm every reconnect is a
# presence change for every connected session: this bounds that fan-out to about one message
# per PRESENCE_PER_MESSAGE of storm (a 60 s storm: ~60,000 messages, not sessions x flushes).
PRESENCE_PER_MESSAGE = 1e-3
_EMPTY: frozenset[int] = frozenset()
_serials = iter(range(1, 1 << 62))


class MapSession:
    queue_limit = QUEUE_LIMIT   # per server: tuning.node_mapsession_buffered_chan_size (Batcher.attach)

    def __init__(self, node_id: int, capver: int, *, keepalive: tuple[float, float] = (50.0, 59.0)) -> None:
        self.node_id = node_id
        self.capver = capver
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.closed = asyncio.Event()
        self.keepalive = keepalive
        self.sent_base: frozenset[int] = _EMPTY    # shared view object (State.peer_view), not a copy
        self.sent_extra: frozenset[int] = _EMPTY   # own extra peers (autogroup:self, via), usually empty
        self.sent_filter: Any = None
        self.sent_ssh: Any = None
        self.sent_dns: Any = None
        self.sent_capmap: Any = None
        self.sent_users: frozenset[int] = _EMPTY   # interned (Mapper.intern_users)
        self.sent_routes: dict[int, tuple[str, ...]] = {}   # per peer, when it offers routes
        self.needs_full = True
        self.messages_sent = 0
        self.serial = next(_serials)      # distinguishes a reconnect from the same session

    @property
    def sent_peers(self) -> frozenset[int]:
        """The peers this session was last sent (a fresh set: for tests and debug pages)."""
        return (self.sent_base | self.sent_extra) - {self.node_id}

    def push(self, message: bytes) -> None:
        if self.queue.qsize() >= self.queue_limit:
            # Too far behind: drop the backlog; the writer sends a fresh full map instead.
            while not self.queue.empty():
                self.queue.get_nowait()
            self.needs_full = True
            self.queue.put_nowait(b"")
            return
        self.queue.put_nowait(message)

    def close(self) -> None:
        self.closed.set()
        self.queue.put_nowait(b"")

    def next_keepalive(self) -> float:
        lo, hi = self.keepalive
        return random.uniform(lo, hi)


class Batcher:
    """Collects Changes and flushes them to sessions once per tick."""

    def __init__(self, state: State, mapper: Mapper, delay: float,
                 on_sent: Callable[[str], None] | None = None) -> None:
        self.state = state
        self.mapper = mapper
        self.delay = delay
        self.sessions: dict[int, MapSession] = {}
        self.pending = Change()
        self._wake = asyncio.Event()
        self.on_sent = on_sent or (lambda kind: None)
        self._maps_seen, self._maps_at = 0, 0.0
        self._next_flush = 0.0
        self._next_presence = 0.0
        self.queue_limit = 0   # > 0: each attached session's backlog limit (else QUEUE_LIMIT)
        state.listeners.append(self.add)

    def add(self, change: Change) -> None:
        for nid in change.peers_changed | change.peers_removed:
            self.mapper.forget(nid)
        self.pending.merge(change)
        self._wake.set()

    def attach(self, session: MapSession) -> MapSession | None:
        """Register ``session``; returns the session it replaced, if any."""
        old = self.sessions.get(session.node_id)
        if self.queue_limit:
            session.queue_limit = self.queue_limit
        self.sessions[session.node_id] = session
        return old

    def detach(self, session: MapSession) -> bool:
        """Remove ``session`` if it is still the node's current one."""
        if self.sessions.get(session.node_id) is session:
            del self.sessions[session.node_id]
            return True
        return False

    def backlog(self) -> int:
        """Sessions that have not yet written what the last flush gave them."""
        return sum(1 for s in self.sessions.values() if not s.queue.empty())

    def storming(self) -> bool:
        """Full maps are being built faster than STORM_RATE per second (a restart or mass join):
        every flush now costs a message per session, so flushes are spaced further apart."""
        now = asyncio.get_running_loop().time()
        built, elapsed = self.mapper.full_maps - self._maps_seen, now - self._maps_at
        self._maps_seen, self._maps_at = self.mapper.full_maps, now
        return built > max(STORM_MIN, STORM_RATE * elapsed)

    async def run(self) -> None:
        self._maps_at = asyncio.get_running_loop().time()
        while True:
            await self._wake.wait()
            await asyncio.sleep(max(self.delay, self._next_flush - asyncio.get_running_loop().time()))
            waited, limit = self.delay, MAX_COALESCE
            while waited < limit:
                if self.storming():
                    limit = STORM_COALESCE
                elif self.backlog() <= max(len(self.sessions) // 20, 8):
                    break
                await asyncio.sleep(self.delay)
                waited += self.delay
            await self._hold_presence()
            self._wake.clear()
            queued = self.flush()
            now = asyncio.get_running_loop().time()
            self._next_flush = now + queued * PER_MESSAGE
            self._next_presence = now + queued * PRESENCE_PER_MESSAGE

    def presence_only(self) -> bool:
        p = self.pending
        return bool(p.online) and not (p.peers_changed or p.peers_removed or p.patches or p.self_changed
                                       or p.policy or p.derp_map or p.dns or p.full)

    async def _hold_presence(self) -> None:
        """While the pending change is presence alone, wait for its turn (or another change)."""
        loop = asyncio.get_running_loop()
        while self.presence_only() and (wait := self._next_presence - loop.time()) > 0:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()

    def flush(self) -> int:
        """Deliver the pending change; returns the number of messages queued."""
        change, self.pending = self.pending, Change()
        if not change:
            return 0
        for nid in change.full:
            s = self.sessions.get(nid)
            if s is not None and nid not in self.state.nodes:
                s.close()   # the node was deleted: end its stream
        batch = Flush(self.mapper, change, go_time(self.state.now()))
        queued = 0
        for session in list(self.sessions.values()):
            if session.needs_full:
                continue
            try:
                msg = batch.message(session)
            except Exception:
                # Contained to this session: every other session still gets its delta.
                log.exception("building a delta for node %s failed; resynchronising", session.node_id)
                session.needs_full = True
                session.push(b"")
                continue
            if msg is None:
                continue
            session.push(msg)
            queued += 1
            self.on_sent("delta")
        return queued
