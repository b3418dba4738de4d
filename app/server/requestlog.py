"""One log line per HTTP request (API, admin console, pages): method, path, status, duration and
client address, on the ``headscale.http`` logger.

Text: ``GET /api/v1/node 200 1.8ms 192.0.2.7``. With ``log.format: json`` every record is one
JSON object (``JsonFormatter``), and request lines carry the fields separately:
``{"time", "level", "logger", "msg", "method", "path", "status", "duration_ms", "client"}``.

Paths are logged without secrets: query values are kept only for harmless parameters (ids,
names, flags), and the ids of pending interactive requests in ``/register/<id>`` and
``/auth/<id>`` are cut to their public prefix. The client address comes from
``clientaddr.request_address`` (the one place that honours ``trusted_proxies``). Requests on the
admin unix socket are logged with client ``local``.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from urllib.parse import parse_qsl, quote

log = logging.getLogger("headscale.http")

# Query parameters whose values are never secret; every other value is replaced by "***".
PLAIN_QUERY = frozenset({"user", "id", "name", "email", "confirmed", "expiry", "disableExpiry", "v", "page",
                         "filter", "sort", "tab"})
_SECRET_SEGMENT = re.compile(r"^(/(?:register|register/confirm|auth|admin/[a-z]+)/)(hskey-authreq-)[0-9a-f]+")
MAX_PATH = 300


def safe_path(path: str, query: bytes | str = b"") -> str:
    """``path?query`` as it may be logged."""
    path = _SECRET_SEGMENT.sub(r"\1\2***", path)
    if isinstance(query, bytes):
        query = query.decode("latin-1")
    if query:
        parts = []
        for k, v in parse_qsl(query, keep_blank_values=True):
            parts.append(f"{quote(k, safe='')}={quote(v, safe='@:') if k in PLAIN_QUERY else '***'}")
        path += "?" + "&".join(parts)
    if len(path) > MAX_PATH:
        path = path[:MAX_PATH] + "…"
    return path


def log_request(method: str, path: str, status: int, seconds: float, client: str) -> None:
    ms = round(seconds * 1000, 1)
    log.info("%s %s %d %.1fms %s", method, path, status, ms, client,
             extra={"http": {"method": method, "path": path, "status": status, "duration_ms": ms,
                             "client": client}})


class JsonFormatter(logging.Formatter):
    """Each record as one JSON object; request records add their fields (see module doc)."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "http", None)
        if isinstance(fields, dict):
            out.update(fields)
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)
