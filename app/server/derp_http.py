"""HTTP side endpoints of the embedded DERP server (PROTOCOL.md 6.4, 6.6) as a Quart blueprint.

``/derp`` itself is not here: it needs the raw socket and is served by ``derp_conn`` via the
edge listener.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections.abc import Awaitable, Callable

from quart import Blueprint, Response, request

from app.core import jsonsafe
from app.core.keys import NODE_PUBLIC, KeyError_, parse_key

VERIFY_BODY_LIMIT = 4 << 10
RESOLVE_TIMEOUT = 5.0
_CHALLENGE = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_ANY_METHOD = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]


def derp_blueprint(
    derp_hostnames: Callable[[], list[str]], verify: Callable[[str], Awaitable[bool]]
) -> Blueprint:
    """Probe, bootstrap DNS, captive-portal and client-admission endpoints.

    ``derp_hostnames`` lists the DERP node host names to resolve for /bootstrap-dns;
    ``verify`` answers whether a ``nodekey:<hex>`` may use the relay (POST /verify).
    """
    bp = Blueprint("derp_http", __name__)

    @bp.route("/derp/probe", methods=_ANY_METHOD)
    @bp.route("/derp/latency-check", methods=_ANY_METHOD)
    async def probe() -> Response:
        # netcheck's HTTPS latency probe; browsers call it cross-origin.
        if request.method not in ("GET", "HEAD"):
            return Response("bogus probe method\n", status=405, content_type="text/plain; charset=utf-8")
        return Response(b"", status=200, headers={"Access-Control-Allow-Origin": "*"})

    @bp.route("/bootstrap-dns", methods=["GET"])
    async def bootstrap_dns() -> Response:
        # DNS fallback for clients whose resolver is broken. Like headscale, ``q`` is ignored
        # and every DERP host name we know is resolved; failures are left out.
        names = list(dict.fromkeys(n for n in derp_hostnames() if n))
        results = await asyncio.gather(*(_resolve(n) for n in names))
        body = {name: ips for name, ips in zip(names, results) if ips}
        return Response(json.dumps(body), status=200, content_type="application/json")

    @bp.route("/generate_204", methods=["GET", "HEAD"])
    async def generate_204() -> Response:
        # Captive-portal check: echo a well-formed challenge so the client knows it reached us.
        headers = {"Cache-Control": "no-cache, no-store, must-revalidate, no-transform, max-age=0"}
        challenge = request.headers.get("X-Tailscale-Challenge", "")
        if challenge and _CHALLENGE.fullmatch(challenge):
            headers["X-Tailscale-Response"] = "response " + challenge
        return Response(b"", status=204, headers=headers)

    @bp.route("/verify", methods=["POST"])
    async def verify_client() -> Response:
        # DERPAdmitClientRequest {"NodePublic": "nodekey:…", "Source": "ip"} -> {"Allow": bool}
        if (request.content_length or 0) > VERIFY_BODY_LIMIT:
            return _error(413, "request body too large")
        body = bytearray()
        async for chunk in request.body:
            body += chunk
            if len(body) > VERIFY_BODY_LIMIT:
                return _error(413, "request body too large")
        try:
            obj = jsonsafe.loads(body)
        except jsonsafe.JSONError:
            return _error(400, "invalid JSON")
        if not isinstance(obj, dict):
            return _error(400, "invalid JSON")
        fields = {str(k).lower(): v for k, v in obj.items()}  # Go matches names case-insensitively
        node_public = fields.get("nodepublic")
        if not isinstance(node_public, str):
            return _error(400, "NodePublic missing")
        try:
            key = NODE_PUBLIC + parse_key(node_public, NODE_PUBLIC).hex()
        except KeyError_:
            return _error(400, "NodePublic is not a node key")
        allow = bool(await verify(key))
        return Response(json.dumps({"Allow": allow}), status=200, content_type="application/json")

    return bp


async def _resolve(name: str) -> list[str]:
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT):
            infos = await loop.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError, UnicodeError):
        return []
    return list(dict.fromkeys(str(info[4][0]).split("%", 1)[0] for info in infos))


def _error(status: int, message: str) -> Response:
    return Response(message + "\n", status=status, content_type="text/plain; charset=utf-8")
