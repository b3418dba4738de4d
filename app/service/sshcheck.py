"""Tailscale SSH "check" mode (PROTOCOL.md 3.5).

A ``check`` SSH rule makes the destination node fetch an SSHAction from us before it lets a
session in. If the pair (source node, destination node) was approved within the rule's
checkPeriod the answer is an immediate accept; otherwise we hand back a ``holdAndDelegate``
URL naming a check request, and the node long-polls it while an admin runs
``headscale auth approve --auth-id <id>`` (or ``reject``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from app.core.authid import new_auth_id
from app.service.errors import NotFound

POLL_SECONDS = 25.0            # one long-poll; the node asks again with the same URL
PENDING_TTL = 15 * 60

ACCEPT = {"accept": True, "allowAgentForwarding": True, "allowLocalPortForwarding": True,
          "allowRemotePortForwarding": True}


@dataclass
class CheckRequest:
    auth_id: str
    src: int
    dst: int
    created: float
    decided: asyncio.Event = field(default_factory=asyncio.Event)
    approved: bool = False


class SSHChecks:
    def __init__(self, server_url: str, check_period: Callable[[int, int], float | None],
                 clock: Callable[[], float] | None = None, poll_seconds: float = POLL_SECONDS) -> None:
        self.server_url = server_url.rstrip("/")
        self.check_period = check_period
        self.clock = clock or (lambda: asyncio.get_running_loop().time())
        self.poll_seconds = poll_seconds
        self.approved: dict[tuple[int, int], float] = {}   # (src, dst) -> when approved
        self.pending: dict[str, CheckRequest] = {}

    def _url(self, src: int, dst: int, local_user: str, auth_id: str) -> str:
        query = urlencode({"local_user": local_user, "auth_id": auth_id})
        return f"{self.server_url}/machine/ssh/action/{src}/to/{dst}?{query}"

    def _delegate(self, src: int, dst: int, local_user: str) -> dict[str, Any]:
        self._gc()
        req = CheckRequest(new_auth_id(), src, dst, self.clock())
        self.pending[req.auth_id] = req
        return {
            "holdAndDelegate": self._url(src, dst, local_user, req.auth_id),
            "message": (f"# Tailscale SSH requires an additional check.\n"
                        f"# To authenticate, visit: {self.server_url}/auth/{req.auth_id}\n"),
        }

    def _gc(self) -> None:
        now = self.clock()
        for k, r in list(self.pending.items()):
            if now - r.created > PENDING_TTL:
                del self.pending[k]

    async def action(self, src: int, dst: int, local_user: str, auth_id: str = "") -> dict[str, Any]:
        period = self.check_period(src, dst)
        if period is None:
            return {"reject": True, "message": "no SSH check rule covers this connection\n"}
        if not auth_id:
            when = self.approved.get((src, dst))
            if when is not None and period > 0 and self.clock() - when < period:
                return dict(ACCEPT)
            return self._delegate(src, dst, local_user)
        req = self.pending.get(auth_id)
        if req is None or (req.src, req.dst) != (src, dst):
            return self._delegate(src, dst, local_user)     # lost or foreign: start a new check
        try:
            await asyncio.wait_for(req.decided.wait(), self.poll_seconds)
        except TimeoutError:
            return {"holdAndDelegate": self._url(src, dst, local_user, auth_id)}
        self.pending.pop(auth_id, None)
        if req.approved:
            return dict(ACCEPT)
        return {"reject": True, "message": "SSH access was rejected by an administrator\n"}

    def decide(self, auth_id: str, approve: bool) -> CheckRequest:
        req = self.pending.get(auth_id)
        if req is None:
            raise NotFound(f"no pending SSH check with id {auth_id!r} (expired or unknown)")
        req.approved = approve
        if approve:
            self.approved[(req.src, req.dst)] = self.clock()
        req.decided.set()
        return req
