"""Routes inside the Noise tunnel: /machine/register, /machine/map and 501 stubs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import h2.exceptions

from app.core import hostinfo, jsonsafe, keys
from app.core.map.wire import frame
from app.core.tailcfg import RequestError, parse_map_request, parse_register_request
from app.server import metrics
from app.server.h2server import Request, Response, StreamClosed
from app.service.errors import NotFound
from app.service.mapgate import MapGate
from app.service.registration import Registrar
from app.service.sessions import Batcher, Mapper, MapSession
from app.service.sshcheck import SSHChecks
from app.service.state import State

log = logging.getLogger("headscale.control")

KEEPALIVE = frame(b'{"KeepAlive":true}')
SENT_DELTA = metrics.MAP_SENT.labels("delta")     # bound once: labels() is a lookup per call
SENT_KEEPALIVE = metrics.MAP_SENT.labels("keepalive")
JSON = "application/json; charset=utf-8"
NOT_IMPLEMENTED = {
    "/machine/set-dns", "/machine/update-health", "/machine/id-token", "/machine/set-device-attr",
    "/machine/audit-log", "/machine/feature/query", "/machine/whoami", "/machine/c2n", "/machine/webclient",
}


class _DirectQueue(asyncio.Queue):
    """A map session's queue (MapSession.queue) that lets its stream write a message at once
    while the stream's task is idle, instead of waking the task for it. Only when nothing is
    queued (order is kept) and only what the socket takes without waiting; all else queues."""

    write_now: Callable[[bytes], bool] | None = None

    def put_nowait(self, item: bytes) -> None:
        write = self.write_now
        if write is not None and item and self.empty():
            try:
                if write(item):
                    return
            except Exception:   # the stream's own task meets the error and ends
                log.debug("direct map write failed; queued for the stream task", exc_info=True)
        super().put_nowait(item)


class ControlRoutes:
    def __init__(self, state: State, registrar: Registrar, mapper: Mapper, batcher: Batcher,
                 keepalive: tuple[float, float] = (50.0, 59.0), ssh_checks: SSHChecks | None = None) -> None:
        self.state = state
        self.ssh_checks = ssh_checks
        self.registrar = registrar
        self.mapper = mapper
        self.batcher = batcher
        self.keepalive = keepalive
        self.probes: Any = None   # app.service.haprobe.RouterProbes when HA probing is on
        self.map_gate = MapGate()

    def for_machine(self, machine_key: str, version: int):
        async def handle(req: Request, resp: Response) -> None:
            await self.dispatch(machine_key, req, resp)

        return handle

    async def dispatch(self, machine_key: str, req: Request, resp: Response) -> None:
        if req.path == "/machine/register" and req.method == "POST":
            raw = _json(req)
            if raw is None:
                return await resp.simple(400, b"invalid JSON body", "text/plain")
            dropped: list[str] = []
            try:
                body = parse_register_request(raw, dropped)
            except RequestError as exc:
                # A field of the wrong type: a RegisterResponse.Error, as headscale answers a
                # request its decoder refuses (the client shows it to the user).
                log.info("register refused for %s: %s", keys.short(machine_key), exc)
                return await resp.simple(200, json.dumps({"Error": str(exc)}).encode(), JSON)
            _log_dropped(machine_key, "register", dropped)
            out = await self.registrar.register(machine_key, body)
            metrics.REGISTRATIONS.labels("error" if out.get("Error") else
                                         "authurl" if out.get("AuthURL") else "ok").inc()
            return await resp.simple(200, json.dumps(out).encode(), JSON)
        if req.path == "/machine/map" and req.method == "POST":
            return await self.map(machine_key, req, resp)
        if req.path.startswith("/machine/ssh/action/") and req.method == "GET" and self.ssh_checks is not None:
            return await self.ssh_action(machine_key, req, resp)
        if req.path.partition("?")[0] == "/machine/ping-response":
            return await self.ping_response(machine_key, req, resp)
        if req.path in NOT_IMPLEMENTED or req.path.startswith("/machine/"):
            return await resp.simple(501, b"not implemented", "text/plain")
        return await resp.simple(404, b"not found", "text/plain")

    async def map(self, machine_key: str, req: Request, resp: Response) -> None:
        st = self.state
        dropped: list[str] = []
        try:
            body = parse_map_request(_json(req), dropped)
        except RequestError as exc:
            return await resp.simple(400, str(exc).encode(), "text/plain")
        _log_dropped(machine_key, "map request", dropped)
        version = body["Version"]
        node = st.node_by_key(body["NodeKey"])
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
            await resp.send(self.mapper.full_map_pieces(session, exact=True), end=True)
            metrics.MAP_SENT.labels("full").inc()
            return None
        metrics.MAP_REQUESTS.labels("stream").inc()
        await self.stream(node.id, version, resp)
        return None

    async def stream(self, node_id: int, version: int, resp: Response) -> None:
        st = self.state
        session = MapSession(node_id, version, keepalive=self.keepalive)
        queue = session.queue = _DirectQueue()
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

            async def first_map() -> None:   # built inside the gate: the latest state when sent
                await resp.send(self.mapper.full_map_pieces(session))

            await self.map_gate.run(first_map)
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

            def write_now(item: bytes) -> bool:
                # While this task waits for its queue, a message the socket and window take at
                # once is written by whoever queues it: no task switch per message.
                if session.needs_full or session.closed.is_set() or node_id not in st.nodes \
                        or not resp.try_send(item):
                    return False
                if item is KEEPALIVE:
                    SENT_KEEPALIVE.inc()
                else:
                    SENT_DELTA.inc()
                    session.messages_sent += 1
                return True

            ending = False
            while not ending and not session.closed.is_set():
                queue.write_now = write_now
                try:
                    item = await queue.get()
                finally:
                    queue.write_now = None
                # Everything queued meanwhile goes out in the same write: messages are
                # length-prefixed, so a joined batch is the same bytes on the wire.
                batch: list[bytes] = []
                deltas = keepalives = 0
                while True:
                    if item is KEEPALIVE:
                        batch.append(item)
                        keepalives += 1
                    elif session.closed.is_set() or node_id not in st.nodes:
                        batch, ending = [], True   # replaced or deleted: not a word more
                        break
                    elif session.needs_full:
                        # Behind or resynchronising: what was queued is superseded by a full map.
                        while not queue.empty():
                            queue.get_nowait()
                        batch = [self.mapper.full_map_frame(session)]
                        deltas = keepalives = 0
                        metrics.MAP_SENT.labels("full").inc()
                        session.messages_sent += 1
                        break
                    else:
                        if item:
                            batch.append(item)
                            deltas += 1
                        session.messages_sent += 1
                    if queue.empty():
                        break
                    item = queue.get_nowait()
                if batch:
                    await resp.send(batch[0] if len(batch) == 1 else b"".join(batch))
                if deltas:
                    SENT_DELTA.inc(deltas)
                if keepalives:
                    SENT_KEEPALIVE.inc(keepalives)
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
                # The node was deleted: end its stream cleanly (the client may already be gone).
                with contextlib.suppress(StreamClosed, OSError, h2.exceptions.H2Error):
                    await resp.send(b"", end=True)


    async def ping_response(self, machine_key: str, req: Request, resp: Response) -> None:
        """``HEAD /machine/ping-response?id=…``: a router answering its HA probe (PingRequest)."""
        probe_id = dict(parse_qsl(req.path.partition("?")[2])).get("id", "")
        ok = self.probes is not None and self.probes.answered(machine_key, probe_id)
        return await resp.simple(200 if ok else 404, b"", "text/plain")

    async def ssh_action(self, machine_key: str, req: Request, resp: Response) -> None:
        """GET /machine/ssh/action/<src>/to/<dst>?local_user=…[&auth_id=…], asked by the destination."""
        path, _, query = req.path.partition("?")
        parts = path.split("/")          # "", machine, ssh, action, src, to, dst
        params = dict(parse_qsl(query))
        if len(parts) != 7 or parts[5] != "to" or not _ascii_digits(parts[4]) or not _ascii_digits(parts[6]):
            return await resp.simple(400, b"malformed SSH action path", "text/plain")
        src, dst = int(parts[4]), int(parts[6])
        dst_node = self.state.nodes.get(dst)
        if dst_node is None or src not in self.state.nodes:
            return await resp.simple(404, b"node not found", "text/plain")
        if dst_node.machine_key != machine_key:   # only the destination may ask about its sessions
            return await resp.simple(403, b"not the destination node", "text/plain")
        action = await self.ssh_checks.action(src, dst, params.get("local_user", ""), params.get("auth_id", ""))
        return await resp.simple(200, json.dumps(action).encode(), JSON)


def _json(req: Request) -> dict[str, Any] | None:
    """The body as a JSON object, or None (too deep, not UTF-8, not an object: a 400)."""
    try:
        # NUL is let through: Hostinfo normalisation drops such strings instead of the request.
        obj = jsonsafe.loads(bytes(req.body) or b"{}", allow_nul=True)
    except jsonsafe.JSONError:
        return None
    return obj if isinstance(obj, dict) else None


def _ascii_digits(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= 18   # int() also takes "²"-like digits


def _log_dropped(machine_key: str, what: str, dropped: list[str]) -> None:
    """One line per request naming what a client sent that peers could not use."""
    if not dropped:
        return
    level = logging.DEBUG if hostinfo.only_unknown(dropped) else logging.WARNING
    if log.isEnabledFor(level):
        log.log(level, "%s of %s: dropped unusable fields: %s", what, keys.short(machine_key),
                hostinfo.summary(dropped))
