"""One error shape on ``/api/``: headscale's ``{"code", "message", "details"}`` (grpc-gateway).

The API blueprint answers its own errors that way; this module covers what never reaches a
route: unknown paths (grpc-gateway: ``{"code": 5, "message": "Not Found", "details": []}``),
wrong methods, oversized or unreadable bodies, and unexpected exceptions (a 500 whose body
says nothing internal; the traceback goes to the log). Other paths keep Quart's plain pages.
"""

from __future__ import annotations

import logging
import re

from quart import Quart, request
from werkzeug.exceptions import HTTPException, InternalServerError

from app.server.api_v1 import error_response

log = logging.getLogger("headscale.api")

# Removed in headscale 0.28 (a node's owner is fixed); older tools (headscale-ui) still call it.
_NODE_MOVE = re.compile(r"^/api/v1/node/[^/]+/user/?$")

_MESSAGES = {
    404: "Not Found",
    405: "Method Not Allowed",
    413: "request body too large (at most 4 MiB)",
}


def is_api_path(path: str) -> bool:
    return path == "/api" or path.startswith("/api/")


def api_error_handlers(app: Quart) -> None:
    @app.errorhandler(HTTPException)
    async def _http_error(e: HTTPException):
        if not is_api_path(request.path):
            return e
        status = e.code or 500
        if status >= 500:
            return await _internal(e)
        if status == 404 and _NODE_MOVE.match(request.path):
            return error_response(400, "a node's owner cannot change (headscale 0.28+): tag the node "
                                       "(POST /api/v1/node/{id}/tags) or register it again as the other user")
        message = _MESSAGES.get(status) or e.description or e.name
        return error_response(status, message)

    @app.errorhandler(InternalServerError)
    async def _internal(e: Exception):
        original = getattr(e, "original_exception", None) or e
        if not is_api_path(request.path):
            return e if isinstance(e, HTTPException) else InternalServerError()
        if original is not e or not isinstance(e, HTTPException):
            log.error("%s %s failed", request.method, request.path, exc_info=original)
        return error_response(500, "internal server error (the server log has the details)")
