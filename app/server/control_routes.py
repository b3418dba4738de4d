"""Routes inside the Noise tunnel: /machine/register, /machine/map and 501 stubs."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from app.core import keys
from app.core.map.wire import frame
from app.core.tailcfg import MIN_SUPPORTED_CAPVER
from app.service.errors import NotFound
from app.service.registration import Registrar
from app.service.sessions import Batcher, MapSession, Mapper
from app.service.state import State
from app.server import metrics
from app.server.h2server import Request, Response, StreamClosed

log = logging.getLogger("headscale.control")

KEEPALIVE = frame(b'{"KeepAlive":true}')
SENT_DELTA = metrics.MAP_SENT.labels("delta")     # bound once: labels() is a lookup per call
SENT_KEEPALIVE = metrics.MAP_SENT.labels("keepalive")
JSON = "application/json; charset=utf-8"
NOT_IMPLEMENTED = {
    "/machine/set-dns", "/machine/update-health", "/machine/id-token", "/machine/set-device-attr",
    "/machine/audit-log", "/machine/feature/query", "/machine/whoami", "/machine/c2n", "/machine/webclient",
}


class ControlRoutes:
    def __init__(self, state: State, registrar: Registrar, mapper: Mapper, batcher: Batcher,
                 keepalive: tuple[float, float] = (50.0, 59.0)) -> None:
        self.state = state
        self.registrar = registrar
        self.mapper = mapper
        self.batcher = batcher
        self.keepalive = keepalive

    def for_machine(self, machine_key: str, version: int):
        async def handle(req: Request, resp: Response) -> None:
            await self.dispatch(machine_key, req, resp)

        return handle

    async def dispatch(self, machine_key: str, req: Request, resp: Response) -> None:
        if req.path == "/machine/register" and req.method == "POST":
            body = _json(req)
            if body is None:
                return await resp.simple(400, b"invalid JSON body", "text/plain")
            out = await self.registrar.register(machine_key, body)
            metrics.REGISTRATIONS.labels("error" if out.get("Error") else
                                         "authurl" if out.get("AuthURL") else "ok").inc()
            return await resp.simple(200, json.dumps(out).encode(), JSON)
        if req.path == "/machine/map" and req.method == "POST":
            return await self.map(machine_key, req, resp)
        if req.path in NOT_IMPLEMENTED or req.path.startswith("/machine/"):
            return await resp.simple(501, b"not implemented", "text/plain")
        return await resp.simple(404, b"not found", "text/plain")

    async def map(self, machine_key: str, req: Request, resp: Response) -> None:
        st = self.state
        body = _json(req)
        if body is None:
            return await resp.simple(400, b"invalid JSON body", "text/plain")
        version = body.get("Version")
        if not isinstance(version, int) or isinstance(version, bool) or version < MIN_SUPPORTED_CAPVER:
            return await resp.simple(400, b"unsupported client version", "text/plain")
        try:
            node_key = keys.normalise(str(body.get("NodeKey") or ""), keys.NODE_PUBLIC)
        except keys.KeyError_:
            return await resp.simple(400, b"invalid node key", "text/plain")
        for name, prefix in (("DiscoKey", keys.DISCO_PUBLIC),):
            if body.get(name) is not None:
                try:
                    body[name] = keys.normalise(str(body[name]), prefix)
                except keys.KeyError_:
                    return await resp.simple(400, f"invalid {name}".encode(), "text/plain")
        if body.get("Endpoints") is not None and not (
            isinstance(body["Endpoints"], list) and all(isinstance(e, str) for e in body["Endpoints"])
        ):
            return await resp.simple(400, b"invalid Endpoints", "text/plain")
        if body.get("Hostinfo") is not None and not isinstance(body["Hostinfo"], dict):
            return await resp.simple(400, b"invalid Hostinfo", "text/plain")
        node = st.node_by_key(node_key)
        if node is None or node.machine_key != machine_key:
            return await resp.simple(404, b"node not found", "text/plain")
        try:
            node = await st.update_from_map_request(node, body)
        except NotFound:
            return await resp.simple(404, b"node not found", "text/plain")
        stream = bool(body.get("Stream"))
        if not stream:
            if body.get("OmitPeers"):
                metrics.MAP_REQUESTS.labels("lite").inc()
                return await resp.simple(200, b"", JSON)
            metrics.MAP_REQUESTS.labels("oneshot").inc()
            session = MapSession(node.id, version)
            await resp.start(200, [("content-type", JSON)])
            await resp.send(frame(self.mapper.full_map(session)), end=True)
            metrics.MAP_SENT.labels("full").inc()
            return None
        metrics.MAP_REQUESTS.labels("stream").inc()
        await self.stream(node.id, version, resp)
        return None

    async def stream(self, node_id: int, version: int, resp: Response) -> None:
        st = self.state
        session = MapSession(node_id, version, keepalive=self.keepalive)
        old = self.batcher.attach(session)
        if old is not None:
            old.close()
        st.set_online(node_id, True)
        metrics.SESSIONS.inc()
        log.info("map session %d started for node %d", session.serial, node_id)
        keepalive_timer: asyncio.TimerHandle | None = None
        try:
            await resp.start(200, [("content-type", JSON)])
            started = asyncio.get_running_loop().time()
            await resp.send(frame(self.mapper.full_map(session)))
            metrics.MAP_SENT.labels("full").inc()
            metrics.FIRST_MAP_SECONDS.observe(asyncio.get_running_loop().time() - started)
            # Keepalives come from one timer per session, queued like any message, rather than a
            # timeout around every get(): that costs a timer (wait_for: a Task) per message sent.
            loop = asyncio.get_running_loop()

            def keepalive_due() -> None:
                nonlocal keepalive_timer
                session.queue.put_nowait(KEEPALIVE)
                keepalive_timer = loop.call_later(session.next_keepalive(), keepalive_due)

            keepalive_timer = loop.call_later(session.next_keepalive(), keepalive_due)
            while not session.closed.is_set():
                item = await session.queue.get()
                if item is KEEPALIVE:
                    await resp.send(KEEPALIVE)
                    SENT_KEEPALIVE.inc()
                    continue
                if session.closed.is_set() or node_id not in st.nodes:
                    break
                if session.needs_full:
                    while not session.queue.empty():
                        session.queue.get_nowait()
                    await resp.send(frame(self.mapper.full_map(session)))
                    metrics.MAP_SENT.labels("full").inc()
                elif item:
                    await resp.send(item)
                    SENT_DELTA.inc()
                session.messages_sent += 1
        except StreamClosed:
            pass
        finally:
            if keepalive_timer is not None:
                keepalive_timer.cancel()
            metrics.SESSIONS.dec()
            if self.batcher.detach(session):
                st.set_online(node_id, False)
                await st.persist_last_seen(node_id)
            if not resp.ended and node_id not in st.nodes:
                try:
                    await resp.send(b"", end=True)
                except Exception:
                    pass


def _json(req: Request) -> dict[str, Any] | None:
    try:
        obj = json.loads(bytes(req.body) or b"{}")
    except (ValueError, UnicodeDecodeError):
        return None
    return obj if isinstance(obj, dict) else None
