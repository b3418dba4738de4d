"""Health probing of HA subnet routers (``node.routes.ha.probe_interval`` / ``probe_timeout``).

A prefix served by two or more online routers is an HA route; only those routers are probed, so
the cost follows the number of HA routers, never the size of the tailnet. Each round (every
``interval``) every HA router without an outstanding probe gets one: a PingRequest on its map
session asking for ``HEAD /machine/ping-response?id=<id>`` over Noise (PROTOCOL.md 3.6). A probe
not answered within ``timeout`` marks the router unhealthy, and the primary election skips it
(app.core.routes.elect_primaries); an answer from an unhealthy router marks it healthy again,
which only makes it a candidate: a primary that moved stays where it is.

Sans-I/O: time comes in as numbers, ids from the caller's random source.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from app.core.routes import EXIT_ROUTES

__all__ = ["HAProber", "ha_routers"]


def ha_routers(served: Mapping[int, Iterable[str]], online: set[int]) -> set[int]:
    """Online routers of every non-exit prefix that has at least two online routers."""
    by_prefix: dict[str, list[int]] = {}
    for nid, routes in served.items():
        if nid in online:
            for r in routes:
                if r not in EXIT_ROUTES:
                    by_prefix.setdefault(r, []).append(nid)
    return {nid for ids in by_prefix.values() if len(ids) > 1 for nid in ids}


@dataclass
class HAProber:
    interval: float
    timeout: float
    unhealthy: set[int] = field(default_factory=set)
    outstanding: dict[str, tuple[int, float]] = field(default_factory=dict)  # id -> (node, deadline)
    _probing: dict[int, str] = field(default_factory=dict)                  # node -> its probe id
    next_round: float = 0.0

    def round_due(self, now: float) -> bool:
        return now >= self.next_round

    def round(self, now: float, routers: set[int], new_id) -> list[tuple[int, str]]:
        """Probes to send now: (node id, probe id). ``new_id()`` makes an unguessable id. An
        unhealthy router stays unhealthy, even while offline, until it answers a probe."""
        if now < self.next_round:
            return []
        self.next_round = now + self.interval
        out = []
        for nid in sorted(routers):
            if nid in self._probing:
                continue
            pid = new_id()
            self.outstanding[pid] = (nid, now + self.timeout)
            self._probing[nid] = pid
            out.append((nid, pid))
        return out

    def probe(self, now: float, node_id: int, probe_id: str) -> str:
        """One probe outside the rounds (replaces the node's outstanding one, if any)."""
        old = self._probing.pop(node_id, None)
        if old is not None:
            self.outstanding.pop(old, None)
        self.outstanding[probe_id] = (node_id, now + self.timeout)
        self._probing[node_id] = probe_id
        return probe_id

    def answered(self, probe_id: str) -> int | None:
        """An answer arrived. Returns the node id when it was unhealthy and is healthy again."""
        entry = self.outstanding.pop(probe_id, None)
        if entry is None:
            return None
        nid = entry[0]
        self._probing.pop(nid, None)
        if nid in self.unhealthy:
            self.unhealthy.discard(nid)
            return nid
        return None

    def owner(self, probe_id: str) -> int | None:
        entry = self.outstanding.get(probe_id)
        return entry[0] if entry is not None else None

    def expire(self, now: float) -> set[int]:
        """Probes past their deadline: their routers become unhealthy (returned if newly so)."""
        newly = set()
        for pid, (nid, deadline) in list(self.outstanding.items()):
            if deadline <= now:
                del self.outstanding[pid]
                self._probing.pop(nid, None)
                if nid not in self.unhealthy:
                    self.unhealthy.add(nid)
                    newly.add(nid)
        return newly

    def next_event(self, now: float) -> float:
        """Seconds until the next round or probe deadline."""
        soonest = min([self.next_round, *(d for _, d in self.outstanding.values())])
        return max(0.0, soonest - now)
