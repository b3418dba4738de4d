"""HA subnet router health probing over map sessions (the decisions are app.core.haprobe).

One task per server: each round it sends a PingRequest to every HA router that has a map
session (a frame on that session's queue, like any delta), checks deadlines, and hands verdicts
to State.set_router_health, which re-elects primaries and sends the move to everyone as a
delta. Answers arrive as ``HEAD /machine/ping-response?id=<id>`` over the router's own Noise
connection (app.server.control_routes); an id is accepted only from the machine it was sent to.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any

from app.core.haprobe import HAProber, ha_routers
from app.core.map.wire import frame_obj
from app.service.sessions import Batcher
from app.service.state import State

log = logging.getLogger("headscale.routes")


class RouterProbes:
    def __init__(self, state: State, batcher: Batcher, server_url: str, interval: float, timeout: float,
                 clock: Any = None) -> None:
        self.state = state
        self.batcher = batcher
        self.url = server_url.rstrip("/") + "/machine/ping-response?id="
        self.core = HAProber(interval, timeout)
        self.clock = clock or asyncio.get_running_loop().time
        self.sent = 0

    def tick(self) -> None:
        now = self.clock()
        st = self.state
        failed = self.core.expire(now)
        if failed:
            log.warning("HA router(s) %s did not answer a probe within %gs: not primary while "
                        "another router is healthy", sorted(failed), self.core.timeout)
            st.set_router_health(failed, healthy=False)
        if not self.core.round_due(now):
            return
        routers = ha_routers({n: r for n, r in st.served.items() if r}, st.online) & set(self.batcher.sessions)
        for nid, pid in self.core.round(now, routers, lambda: secrets.token_hex(12)):
            self._send(nid, pid)

    def probe_now(self, node_id: int) -> str | None:
        """Ping one connected node now, outside the rounds; returns the probe id."""
        if node_id not in self.batcher.sessions:
            return None
        pid = self.core.probe(self.clock(), node_id, secrets.token_hex(12))
        self._send(node_id, pid)
        return pid

    def _send(self, node_id: int, probe_id: str) -> None:
        session = self.batcher.sessions.get(node_id)
        if session is not None:
            session.push(frame_obj({"PingRequest": {"URL": self.url + probe_id, "URLIsNoise": True,
                                                    "Log": False}}))
            self.sent += 1

    def answered(self, machine_key: str, probe_id: str) -> bool:
        """A ``/machine/ping-response`` from ``machine_key``; False for an unknown id or a
        machine the id was not sent to."""
        nid = self.core.owner(probe_id)
        node = self.state.nodes.get(nid) if nid is not None else None
        if node is None or node.machine_key != machine_key:
            return False
        back = self.core.answered(probe_id)
        if back is not None:
            log.info("HA router %d answers probes again", back)
            self.state.set_router_health({back}, healthy=True)
        return True

    async def run(self) -> None:
        while True:
            try:
                self.tick()
            except Exception:
                log.exception("HA router probing failed this round")
            await asyncio.sleep(min(1.0, max(0.05, self.core.next_event(self.clock()))))
