"""The API's document and its browsable page: ``/api/v1/openapi.json``, headscale's
``/swagger/v1/openapiv2.json`` (same document, OpenAPI 3.1 despite the name) and ``/swagger``.

The page and its script and style are files of this package (apidoc/); nothing is loaded from
elsewhere, so the page runs under a strict Content-Security-Policy.
"""

from __future__ import annotations

import json
from importlib import resources

from quart import Blueprint, Response

from app.server.openapi import document

PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
_TYPES = {"index.html": "text/html; charset=utf-8", "apidoc.js": "text/javascript; charset=utf-8",
          "apidoc.css": "text/css; charset=utf-8"}


def _asset(name: str) -> bytes:
    return resources.files("app.server").joinpath("apidoc", name).read_bytes()


def apidoc_blueprint() -> Blueprint:
    bp = Blueprint("apidoc", __name__)
    body = json.dumps(document(), indent=1).encode()
    assets = {name: _asset(name) for name in _TYPES}

    def doc() -> Response:
        return Response(body, content_type="application/json")

    bp.add_url_rule("/api/v1/openapi.json", "openapi", doc, methods=["GET"])
    bp.add_url_rule("/swagger/v1/openapiv2.json", "openapiv2", doc, methods=["GET"])

    def serve(name: str) -> Response:
        resp = Response(assets[name], content_type=_TYPES[name])
        resp.headers["Content-Security-Policy"] = PAGE_CSP
        resp.headers["Cache-Control"] = "no-cache"
        return resp

    @bp.get("/swagger")
    async def page():
        return serve("index.html")

    @bp.get("/swagger/<name>")
    async def asset(name: str):
        if name not in _TYPES or name == "index.html":
            return Response("not found", status=404, content_type="text/plain")
        return serve(name)

    return bp
