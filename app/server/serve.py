"""`headscale serve`: wire the store, service and adapters together and run until stopped."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import os
import signal
import ssl
import stat
import sys
import urllib.request
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import yaml

from app.core import derpmap, keys
from app.core.map.builder import MapSettings, dns_config
from app.server import limits, logguard, metrics
from app.server.acme_tls import AcmeTLS
from app.server.body_budget import ByteBudget
from app.server.clientaddr import configure as configure_trusted_proxies
from app.server.control_routes import ControlRoutes
from app.server.edge import Edge
from app.server.ts2021 import TS2021
from app.server.ts2021_ws import with_websocket
from app.service import oidc_setup
from app.service.errors import Invalid
from app.service.policy import PolicyService
from app.service.registration import Registrar
from app.service.sessions import Batcher, Mapper
from app.service.sshcheck import SSHChecks
from app.service.state import State

log = logging.getLogger("headscale")


@dataclass
class Services:
    cfg: Any
    state: State
    registrar: Registrar
    mapper: Mapper
    batcher: Batcher
    policy: PolicyService
    ts2021: TS2021
    ssh_checks: Any = None
    oidc: Any = None            # app.service.oidc.OIDCLogin when oidc.issuer is set
    derp: Any = None
    derp_blueprint: Any = None
    stun: Any = None
    extra_records: Any = None   # app.service.extrarecords.ExtraRecordsFile (dns.extra_records_path)
    probes: Any = None          # app.service.haprobe.RouterProbes (node.routes.ha.probe_interval > 0)
    edges: list[Edge] = field(default_factory=list)
    tasks: list[asyncio.Task] = field(default_factory=list)
    addresses: dict[str, Any] = field(default_factory=dict)


# ---- keys on disk -------------------------------------------------------------------------

def read_or_create_private_key(path: str) -> bytes:
    """A ``privkey:<hex>`` file, created with mode 0600 when missing (headscale's format)."""
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            text = f.read().strip()
        try:
            return keys.parse_key(text, keys.PRIVATE)
        except keys.KeyError_ as exc:
            raise SystemExit(f"error: private key file {path} is invalid: {exc}") from None
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    raw = keys.new_private()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(keys.format_key(raw, keys.PRIVATE) + "\n")
    log.info("generated a new private key at %s", path)
    return raw


def split_hostport(addr: str, default_port: int = 0) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port or default_port)


# ---- settings derived from config ---------------------------------------------------------

def map_settings(cfg: Any) -> MapSettings:
    dns = cfg.dns
    return MapSettings(
        base_domain=dns.base_domain or "",
        domain=urlsplit(cfg.server_url).hostname or "",
        dns_config=dns_config(
            magic_dns=bool(dns.magic_dns),
            base_domain=dns.base_domain or "",
            override_local_dns=bool(dns.override_local_dns),
            global_nameservers=list(cfg.get("dns.nameservers.global") or []),
            split={k: list(v) for k, v in (cfg.get("dns.nameservers.split") or {}).items()},
            search_domains=list(dns.search_domains or []),
            extra_records=[dict(r) for r in (dns.extra_records or [])],
        ),
        taildrop=bool(cfg.get("taildrop.enabled")),
        auto_update=bool(cfg.get("auto_update.enabled")),
        logtail=bool(cfg.get("logtail.enabled")),
    )


def load_derp_map(cfg: Any, fetch_urls: bool = True) -> dict[str, Any]:
    maps = []
    if fetch_urls:
        for url in cfg.derp.urls or []:
            try:
                with urllib.request.urlopen(url, timeout=10) as r:
                    maps.append(derpmap.normalise(json.loads(r.read()), url))
            except Exception as exc:  # noqa: BLE001 - any failure: keep the other sources
                log.warning("could not load DERP map from %s: %s", url, exc)
    for path in cfg.derp.paths or []:
        try:
            with open(path, encoding="utf-8") as f:
                maps.append(derpmap.normalise(yaml.safe_load(f), path))
        except Exception as exc:  # noqa: BLE001 - any failure: keep the other sources
            log.warning("could not load DERP map file %s: %s", path, exc)
    srv = cfg.derp.server
    if srv.enabled and srv.automatically_add_embedded_derp_region:
        _, stun_port = split_hostport(srv.stun_listen_addr or ":3478", 3478)
        if not srv.stun.enabled:
            stun_port = 0  # STUNPort -1: clients do not try STUN against this region
        maps.append(derpmap.embedded_region(
            cfg.server_url, region_id=int(srv.region_id), region_code=srv.region_code,
            region_name=srv.region_name, stun_port=stun_port, ipv4=srv.ipv4 or "", ipv6=srv.ipv6 or "",
        ))
    return derpmap.merge(*maps)


# ---- build and run ------------------------------------------------------------------------

async def build(cfg: Any, db: Any = None) -> Services:
    """Everything ``start`` serves; ``db`` is an already open Database (HA takeover) or None
    to open the one the config names."""
    from app.server.database import open_database

    logguard.quiet_sql_library()
    # First of all: with only_start_if_oidc_is_available a dead provider stops the start here.
    oidc_provider, oidc_retry = oidc_setup.provider_from_config(cfg), None
    if oidc_provider is not None:
        oidc_retry = await oidc_setup.discover_at_start(
            oidc_provider, bool(cfg.oidc.only_start_if_oidc_is_available))
    noise_private = read_or_create_private_key(cfg.noise.private_key_path)
    if db is None:
        db = await open_database(cfg)
    configure_trusted_proxies(cfg.trusted_proxies or [])
    state = State(db, cfg)
    await state.load()
    state.settings = map_settings(cfg)
    state.derp_map = await asyncio.get_running_loop().run_in_executor(None, load_derp_map, cfg)
    policy = PolicyService(state, cfg.policy.mode, cfg.policy.path or "")
    try:
        try:
            await policy.load()
        except (Invalid, OSError, UnicodeDecodeError) as exc:
            # One line, never a traceback: what is wrong and where (the problems joined).
            where = f"policy file {cfg.policy.path}" if cfg.policy.mode == "file" else "stored policy"
            text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise SystemExit(f"error: {where}: {'; '.join(text.splitlines())} (fix it, or check it "
                             "with `headscale configtest`)") from None
        extra_records = _extra_records(state, cfg)
    except SystemExit:
        await db.close()   # its worker thread would keep the process from exiting
        raise
    mapper = Mapper(state)
    batcher = Batcher(state, mapper, float(cfg.tuning.batch_change_delay), on_sent=lambda kind: None)
    batcher.queue_limit = int(cfg.tuning.node_mapsession_buffered_chan_size)
    registrar = Registrar(state)
    ssh_checks = SSHChecks(cfg.server_url, lambda src, dst: state.policy.ssh_check_period(src, dst))
    routes = ControlRoutes(state, registrar, mapper, batcher, ssh_checks=ssh_checks)
    ts = TS2021(noise_private, routes.for_machine, idle_timeout=float(cfg.tuning.noise_idle_timeout),
                max_streams=int(cfg.tuning.noise_max_streams))
    services = Services(cfg, state, registrar, mapper, batcher, policy, ts, ssh_checks=ssh_checks)
    services.extra_records = extra_records
    ha = cfg.node.routes.ha
    if float(ha.probe_interval) > 0:
        from app.service.haprobe import RouterProbes

        services.probes = routes.probes = RouterProbes(state, batcher, cfg.server_url,
                                                       float(ha.probe_interval), float(ha.probe_timeout))
    if oidc_provider is not None:
        services.oidc = oidc_setup.login_from_config(cfg, oidc_provider, state, registrar, ssh_checks)
        if oidc_retry is not None:
            services.tasks.append(oidc_retry)
    if cfg.derp.server.enabled:
        _setup_derp(services)
    return services


def _extra_records(state: State, cfg: Any) -> Any:
    if not cfg.dns.extra_records_path:
        return None
    from app.service.extrarecords import ExtraRecordsFile

    extra = ExtraRecordsFile(state, cfg.dns.extra_records_path)
    try:
        extra.load()
    except Invalid as exc:
        raise SystemExit(f"error: {exc} (fix it, or check it with `headscale configtest`)") from None
    return extra


async def _extra_records_watch(s: Services) -> None:
    while True:
        await asyncio.sleep(1.0)
        s.extra_records.poll()


def _setup_derp(services: Services) -> None:
    from app.server.derp_conn import DerpServer
    from app.server.derp_http import derp_blueprint

    cfg = services.cfg
    state = services.state
    private = read_or_create_private_key(cfg.derp.server.private_key_path)

    async def verify(node_key: str) -> bool:
        node = state.node_by_key(node_key)
        return node is not None and not node.is_expired(state.now())

    services.derp = DerpServer(private, verify if cfg.derp.server.verify_clients else None,
                               handshake_timeout=float(cfg.tuning.derp_login_timeout))
    # A deleted or expired node loses its relay connection at once.
    state.removed_hooks.append(lambda node: services.derp.close_client(node.node_key))
    metrics.register_derp(services.derp)

    def hostnames() -> list[str]:
        out = []
        for region in state.derp_map.get("Regions", {}).values():
            for node in region.get("Nodes", []):
                if node.get("HostName"):
                    out.append(node["HostName"])
        return out

    services.derp_blueprint = derp_blueprint(hostnames, verify)


def tls_context(cfg: Any) -> ssl.SSLContext | None:
    cert, key = cfg.tls_cert_path, cfg.tls_key_path
    if not cert or not key:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


async def start(services: Services) -> None:
    """Open every listener and background task; fills ``services.addresses``."""
    from app.server.web import create_app, create_metrics_app

    cfg = services.cfg
    app = create_app(services)
    upgrades = {"/ts2021": with_websocket(services.ts2021.handle)}
    if services.derp is not None:
        derp = services.derp

        async def derp_upgrade(reader, writer, head):
            await derp.handle(reader, writer, head.method, head.path, head.headers)

        upgrades["/derp"] = derp_upgrade
    limits.raise_fd_limit()
    logguard.install_exception_handler(asyncio.get_running_loop())
    # One admission count for every TCP listener: a source's connections add up across them.
    admission = limits.Admission(int(cfg.tuning.max_connections_per_source))
    # One body budget for every HTTP listener too (app/server/body_budget.py).
    budget = ByteBudget(int(cfg.tuning.max_buffered_request_bytes))
    metrics.register_body_budget(budget)
    timeouts = {"head_timeout": float(cfg.tuning.request_head_timeout),
                "http_idle_timeout": float(cfg.tuning.http_idle_timeout),
                "body_timeout": float(cfg.tuning.request_body_timeout), "budget": budget}
    edge = Edge(app, upgrades=upgrades, admission=admission, **timeouts)
    services.edges.append(edge)
    tls = tls_context(cfg)
    acme = AcmeTLS(cfg) if cfg.tls_letsencrypt_hostname else None   # automatic TLS (ACME)
    if acme is not None:
        tls = acme.context
    services.tls = tls
    host, port = split_hostport(cfg.listen_addr, 8080)
    server = await edge.listen_tcp(host, port, tls)
    services.addresses["listen"] = server.sockets[0].getsockname()[:2]
    if acme is not None:
        services.acme = acme
        await acme.start()   # the certificate (cache or new order) before anything else starts
        services.tasks.append(acme.task)

    if cfg.unix_socket:
        admin = Edge(app, upgrades={}, trusted=True, **timeouts)
        services.edges.append(admin)
        path = cfg.unix_socket
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        if os.path.exists(path):
            if not stat.S_ISSOCK(os.stat(path).st_mode):
                raise SystemExit(f"error: unix_socket path {path} exists and is not a socket")
            os.unlink(path)
        await admin.listen_unix(path)
        os.chmod(path, int(str(cfg.unix_socket_permission), 8) if isinstance(cfg.unix_socket_permission, str)
                 else int(cfg.unix_socket_permission))
        services.addresses["unix"] = path

    if cfg.metrics_listen_addr:
        medge = Edge(create_metrics_app(services), upgrades={}, admission=admission, **timeouts)
        services.edges.append(medge)
        mhost, mport = split_hostport(cfg.metrics_listen_addr, 9090)
        msrv = await medge.listen_tcp(mhost, mport)
        services.addresses["metrics"] = msrv.sockets[0].getsockname()[:2]

    if services.derp is not None and cfg.derp.server.stun.enabled and cfg.derp.server.stun_listen_addr:
        from app.server.stun_udp import start_stun

        shost, sport = split_hostport(cfg.derp.server.stun_listen_addr, 3478)
        services.stun = await start_stun(shost, sport)
        services.addresses["stun"] = services.stun.get_extra_info("sockname")[:2]

    loop = asyncio.get_running_loop()
    services.tasks += [
        loop.create_task(services.batcher.run(), name="batcher"),
        loop.create_task(_ephemeral_gc(services), name="ephemeral-gc"),
        loop.create_task(_expiry_watch(services), name="expiry"),
        loop.create_task(_gauges(services), name="gauges"),
        loop.create_task(_policy_watch(services), name="policy-watch"),
        loop.create_task(logguard.flush_task(), name="log-flush"),
        loop.create_task(limits.trim_memory_task([admission]), name="malloc-trim"),
    ]
    if services.probes is not None:
        services.tasks.append(loop.create_task(services.probes.run(), name="ha-probe"))
    if services.extra_records is not None:
        services.tasks.append(loop.create_task(_extra_records_watch(services), name="extra-records"))
    if cfg.derp.auto_update_enabled and (cfg.derp.urls or cfg.derp.paths):
        services.tasks.append(loop.create_task(_derp_refresh(services), name="derp-refresh"))


async def stop(services: Services) -> None:
    for t in services.tasks:
        t.cancel()
    for t in services.tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await t
    for e in services.edges:
        await e.close()
    if services.stun is not None:
        services.stun.close()
    if services.cfg.unix_socket and os.path.exists(services.cfg.unix_socket):
        with contextlib.suppress(OSError):
            os.unlink(services.cfg.unix_socket)
    await services.state.db.close()


async def reload(services: Services) -> None:
    """SIGHUP: re-read the policy file and the TLS certificate."""
    await services.policy.reload()
    tls = getattr(services, "tls", None)
    if tls is not None and services.cfg.tls_cert_path:   # ACME certificates renew on their own
        try:
            tls.load_cert_chain(services.cfg.tls_cert_path, services.cfg.tls_key_path)
            log.info("TLS certificate reloaded")
        except (OSError, ssl.SSLError) as exc:
            log.error("TLS certificate reload failed, keeping the old one: %s", exc)


async def _ephemeral_gc(s: Services) -> None:
    timeout = float(s.cfg.node.ephemeral.inactivity_timeout)
    interval = max(1.0, min(30.0, timeout / 4))
    while True:
        await asyncio.sleep(interval)
        try:
            gone = await s.state.collect_ephemeral(timeout)
            if gone:
                log.info("deleted inactive ephemeral nodes %s", gone)
        except Exception:
            log.exception("ephemeral node collection failed")


async def _expiry_watch(s: Services) -> None:
    last = s.state.now()
    while True:
        await asyncio.sleep(1.0)
        now = s.state.now()
        s.state.announce_expired(s.state.expired_since(last, now))
        last = now


async def _gauges(s: Services) -> None:
    while True:
        metrics.NODES.set(len(s.state.nodes))
        metrics.NODES_ONLINE.set(len(s.state.online))
        metrics.NOISE_CONNECTIONS.set(s.ts2021.connections)
        await asyncio.sleep(5.0)


async def _policy_watch(s: Services) -> None:
    while True:
        await asyncio.sleep(2.0)
        if s.policy.file_changed():
            await s.policy.reload()


async def _derp_refresh(s: Services) -> None:
    every = max(1.0, float(s.cfg.derp.update_frequency))
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(every)
        new = await loop.run_in_executor(None, load_derp_map, s.cfg)
        s.state.set_derp_map(new)


async def run(cfg: Any, ready: asyncio.Event | None = None, stop_event: asyncio.Event | None = None) -> None:
    from app.server.database import is_postgres

    if is_postgres(cfg):  # one active server per database, the others stand by (ha.py)
        from app.server.ha import run_ha

        await run_ha(cfg, ready, stop_event)
        return
    services = await build(cfg)
    await start(services)
    # The tailnet loaded at start lives as long as the process: move it out of the collector's
    # way, and collect young objects less often (full collections over ~10^5 objects pause the
    # loop for tens of milliseconds, which lands straight on map fan-out latency).
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)
    stop_event = stop_event or asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGTERM, stop_event.set)
        loop.add_signal_handler(signal.SIGINT, stop_event.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(reload(services)))
    log.info("listening on %s (server_url %s)", cfg.listen_addr, cfg.server_url)
    if ready is not None:
        ready.set()
    try:
        await stop_event.wait()
    finally:
        log.info("shutting down")
        await stop(services)


def write_dev_config(cfg: Any, path: str) -> None:
    """Write the embedded development config out, so the CLI can use it with -c."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write("# Written by `headscale serve --dev` (make run): the embedded development config.\n")
        yaml.safe_dump(cfg.as_dict(masked=False), f, sort_keys=True)


def setup_logging(level: str, fmt: str = "text") -> None:
    lvl = {"trace": "DEBUG", "debug": "DEBUG", "info": "INFO", "warn": "WARNING", "warning": "WARNING",
           "error": "ERROR", "fatal": "CRITICAL", "panic": "CRITICAL",
           "disabled": logging.CRITICAL + 10}.get(str(level).lower(), "INFO")
    if fmt == "json":
        from app.server.requestlog import JsonFormatter

        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(JsonFormatter())
        logging.basicConfig(level=lvl, handlers=[handler])
    else:
        logging.basicConfig(level=lvl, stream=sys.stdout, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def main(argv: list[str]) -> int:
    from app.config import ConfigError, dev_config, load_config

    parser = argparse.ArgumentParser(prog="headscale serve")
    parser.add_argument("words", nargs="*")
    parser.add_argument("-c", "--config", default=None)
    parser.add_argument("--dev", action="store_true", help="run on the embedded development config under ./data")
    args, _ = parser.parse_known_args(argv)   # global CLI flags (-o, --force) do not matter here
    try:
        if args.dev:
            cfg = dev_config(os.path.abspath("data"))
            write_dev_config(cfg, os.path.join("data", "config.yaml"))
        else:
            cfg = load_config(args.config)
    except ConfigError as exc:
        for p in exc.problems:
            print(f"config error: {p}", file=sys.stderr)
        return 1
    setup_logging(cfg.log.level, cfg.log.format)
    for warning in getattr(cfg, "warnings", ()):
        log.warning("config: %s", warning)
    if args.dev:
        print(
            "Development server on http://127.0.0.1:8080 (data and config in ./data).\n"
            "Create a user and a pre-auth key from another shell:\n"
            "  .venv/bin/headscale -c data/config.yaml users create alice\n"
            "  .venv/bin/headscale -c data/config.yaml preauthkeys create -u 1 --reusable\n"
            "then on a machine: tailscale up --login-server http://127.0.0.1:8080 --authkey <key>\n"
            "Web console: http://127.0.0.1:8080/admin, signed in with a key from\n"
            "  .venv/bin/headscale -c data/config.yaml apikeys create",
            flush=True,
        )
    try:
        asyncio.run(run(cfg))
    except KeyboardInterrupt:
        pass
    return 0
