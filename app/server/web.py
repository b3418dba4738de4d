"""The Quart application: public HTTP routes, the REST API, DERP side routes."""

from __future__ import annotations

import json
import platform
import time

from quart import Quart, Response, request

from app import HEADSCALE_API_VERSION, __version__
from app.server import metrics
from app.server.api_errors import api_error_handlers
from app.server.api_v1 import api_blueprint
from app.server.apidoc import apidoc_blueprint
from app.server.clientaddr import request_address
from app.server.pages import pages_blueprint
from app.server.requestlog import log_request, safe_path

SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def create_app(services) -> Quart:
    app = Quart("headscale")
    app.config["SERVICES"] = services
    app.config["MAX_CONTENT_LENGTH"] = 4 * 1024 * 1024

    @app.before_request
    async def _start_timer():
        request.scope["headscale.t0"] = time.perf_counter()

    @app.after_request
    async def _headers(resp: Response):
        for k, v in SECURITY_HEADERS.items():
            resp.headers.setdefault(k, v)
        t0 = request.scope.get("headscale.t0")
        if t0 is not None:
            rule = request.url_rule.rule if request.url_rule else "unmatched"
            took = time.perf_counter() - t0
            metrics.HTTP_SECONDS.labels(rule, str(resp.status_code)).observe(took)
            log_request(request.method, safe_path(request.path, request.query_string), resp.status_code, took,
                        request_address(request))
        return resp

    @app.get("/key")
    async def key():
        v = request.args.get("v", "")
        if not v.isdigit():
            return Response("missing or invalid v parameter", status=400, content_type="text/plain")
        body = {"legacyPublicKey": "mkey:" + "0" * 64, "publicKey": services.ts2021.public_key}
        return Response(json.dumps(body), content_type="application/json")

    @app.get("/health")
    async def health():
        good = await services.state.db.ping()
        body = json.dumps({"status": "pass" if good else "fail"})
        return Response(body, status=200 if good else 500, content_type="application/health+json")

    @app.get("/version")
    async def version():
        # ``version`` is the headscale release whose API this server implements: admin tools
        # (Headplane) compare it as semver to pick their code paths. Our own is ``pyheadscale``.
        body = {"version": HEADSCALE_API_VERSION, "pyheadscale": __version__, "commit": "", "buildTime": "",
                "dirty": False,
                "python": {"version": platform.python_version(), "os": platform.system().lower(),
                           "arch": platform.machine()}}
        return Response(json.dumps(body), content_type="application/json")

    @app.get("/robots.txt")
    async def robots():
        return Response("User-agent: *\nDisallow: /\n", content_type="text/plain")

    app.register_blueprint(pages_blueprint())
    app.register_blueprint(api_blueprint())
    app.register_blueprint(apidoc_blueprint())
    if services.cfg.get("console.enabled"):
        from app.server.console import console_blueprint

        app.register_blueprint(console_blueprint(services))
    api_error_handlers(app)
    if services.derp_blueprint is not None:
        app.register_blueprint(services.derp_blueprint)
    return app


def create_metrics_app(services=None) -> Quart:
    """The private listener: /metrics, and /debug pages showing what the server sent."""
    app = Quart("headscale-metrics")

    @app.get("/metrics")
    async def metrics_route():
        return Response(metrics.render(), content_type="text/plain; version=0.0.4")

    @app.get("/debug/sessions")
    async def debug_sessions():
        sessions = services.batcher.sessions if services else {}
        body = {
            str(nid): {"serial": s.serial, "peers": sorted(s.sent_peers), "messages": s.messages_sent}
            for nid, s in sorted(sessions.items())
        }
        return Response(json.dumps(body), content_type="application/json")

    @app.get("/debug/derp")
    async def debug_derp():
        stats = services.derp.stats() if services and services.derp is not None else {}
        if services and services.stun is not None:
            proto = services.stun.get_protocol()
            stats.update(stun_requests=proto.requests, stun_responses=proto.responses, stun_dropped=proto.dropped,
                         stun_last_request=getattr(proto, "last_request", b"").hex())
        return Response(json.dumps(stats), content_type="application/json")

    return app
