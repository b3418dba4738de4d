"""`headscale serve` on PostgreSQL: stand by until this process holds the lease, then serve.

Roles (metric ``headscale_ha_role{role}``, 1 for the current one; ``headscale_ha_epoch``):

| role     | what the process does                                                       |
|----------|-----------------------------------------------------------------------------|
| standby  | tries the lease every second; ``listen_addr`` answers every request with 503 (``/health`` too, so a load balancer or Fly's proxy sends traffic elsewhere); ``/ts2021`` and ``/derp`` get a raw 503; the unix socket (CLI) answers 503 "this server is a standby" |
| active   | holds the lease (store/ha.py); opens the pool, loads the whole tailnet from the database, serves as a single server would; checks the lease every second |
| deposed  | lost the lease (its lock session ended, or a write was fenced): the process exits at once with status 75, so it neither serves nor writes again; a supervisor restarts it, and it comes back as a standby |

Takeover after the active one dies: PostgreSQL ends its session (at once for a killed process
on a live host; after TCP keepalive for a vanished host), the lock is free, a standby gets it
within ``POLL_SECONDS`` and starts serving after loading the state.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import time
from typing import Any

from prometheus_client import Gauge
from quart import Quart, Response

from app.server import metrics
from app.server.edge import Edge

log = logging.getLogger("headscale.ha")

POLL_SECONDS = 1.0
HEARTBEAT_SECONDS = 1.0
EXIT_DEPOSED = 75  # EX_TEMPFAIL: restart me (as a standby)
ROLES = ("standby", "active", "deposed")

ROLE = Gauge("headscale_ha_role", "1 for this server's HA role (standby, active, deposed)", ["role"],
             registry=metrics.REGISTRY)
EPOCH = Gauge("headscale_ha_epoch", "HA lease epoch this server holds (0: none)", registry=metrics.REGISTRY)

STANDBY_MESSAGE = (
    "this server is a standby: another headscale serve holds the lease on the PostgreSQL "
    "database and serves the tailnet; point the CLI at the active server (or wait: a standby "
    "takes over within seconds when the active one stops)")


def set_role(role: str) -> None:
    for r in ROLES:
        ROLE.labels(r).set(1 if r == role else 0)


def holder_name() -> str:
    machine = os.environ.get("FLY_MACHINE_ID") or socket.gethostname()
    return f"{machine}:{os.getpid()}"


def standby_app() -> Quart:
    app = Quart("headscale-standby")
    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]

    @app.route("/health", methods=methods)
    async def health():
        body = json.dumps({"status": "standby", "role": "standby"})
        return Response(body, status=503, content_type="application/health+json",
                        headers={"Retry-After": "1"})

    @app.route("/", defaults={"path": ""}, methods=methods)
    @app.route("/<path:path>", methods=methods)
    async def refuse(path: str):
        body = json.dumps({"code": 14, "message": STANDBY_MESSAGE, "details": [], "role": "standby"})
        return Response(body, status=503, content_type="application/json", headers={"Retry-After": "1"})

    return app


async def _raw_503(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: Any) -> None:
    """/ts2021 and /derp upgrades on a standby: a plain 503, then close."""
    body = STANDBY_MESSAGE.encode()
    writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nRetry-After: 1\r\n"
                 b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    with contextlib.suppress(OSError):
        await writer.drain()
    writer.close()


async def start_standby(cfg: Any) -> list[Edge]:
    from app.server.serve import split_hostport, tls_context
    from app.server.web import create_metrics_app

    edges: list[Edge] = []
    app = standby_app()
    edge = Edge(app, upgrades={"/ts2021": _raw_503, "/derp": _raw_503})
    edges.append(edge)
    host, port = split_hostport(cfg.listen_addr, 8080)
    await edge.listen_tcp(host, port, tls_context(cfg))
    if cfg.unix_socket:
        admin = Edge(app, upgrades={}, trusted=True)
        edges.append(admin)
        path = cfg.unix_socket
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        await admin.listen_unix(path)
        perm = cfg.unix_socket_permission
        os.chmod(path, int(str(perm), 8) if isinstance(perm, str) else int(perm))
    if cfg.metrics_listen_addr:
        medge = Edge(create_metrics_app(None), upgrades={})
        edges.append(medge)
        mhost, mport = split_hostport(cfg.metrics_listen_addr, 9090)
        await medge.listen_tcp(mhost, mport)
    return edges


async def _close(edges: list[Edge]) -> None:
    for e in edges:
        with contextlib.suppress(Exception):
            await e.close()


def _exit_deposed(reason: str) -> None:
    """Stop serving at once: the kernel closes every socket of the process with it."""
    set_role("deposed")
    log.critical("HA: deposed (%s); exiting with status %d so a supervisor restarts this server as a "
                 "standby", reason, EXIT_DEPOSED)
    logging.shutdown()
    os._exit(EXIT_DEPOSED)


async def run_ha(cfg: Any, ready: asyncio.Event | None = None, stop_event: asyncio.Event | None = None,
                 on_deposed: Any = _exit_deposed) -> None:
    from app.server import serve
    from app.server.database import open_database, postgres_conninfo, postgres_display
    from app.store.ha import Lease

    stop_event = stop_event or asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGTERM, stop_event.set)
        loop.add_signal_handler(signal.SIGINT, stop_event.set)
    lease = Lease(postgres_conninfo(cfg), holder_name(), on_lost=on_deposed)
    set_role("standby")
    EPOCH.set(0)
    edges = await start_standby(cfg)
    log.info("HA: standby on %s, waiting for the lease on %s", cfg.listen_addr, postgres_display(cfg))
    if ready is not None:
        ready.set()
    current = None
    while not stop_event.is_set():
        if await lease.try_acquire():
            break
        seen = await lease.current()
        if seen != current and seen is not None:
            log.info("HA: standby; the active server is %s (epoch %d)", seen[1], seen[0])
        current = seen
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop_event.wait(), POLL_SECONDS)
    if stop_event.is_set():
        await _close(edges)
        await lease.close()
        return

    started = time.monotonic()
    await _close(edges)
    try:
        db = await open_database(cfg)
        db._engine.fence = lease.check
        services = await serve.build(cfg, db=db)
        await serve.start(services)
    except Exception as exc:
        # Holding the lease without serving would keep every standby out: give it back.
        await lease.close()
        log.error("HA: took the lease but could not start serving (%s: %s); lease released",
                  type(exc).__name__, exc)
        raise
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(serve.reload(services)))
    set_role("active")
    EPOCH.set(lease.epoch or 0)
    log.info("HA: active (epoch %s): %d nodes loaded, serving %.2f s after taking the lease",
             lease.epoch, len(services.state.nodes), time.monotonic() - started)

    async def watch() -> None:
        while await lease.heartbeat():
            await asyncio.sleep(HEARTBEAT_SECONDS)

    watcher = loop.create_task(watch(), name="ha-lease")
    try:
        await asyncio.wait([watcher, loop.create_task(stop_event.wait())], return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        log.info("shutting down")
        await serve.stop(services)
        await lease.close()
