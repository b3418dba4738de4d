"""Console sign-in sessions and CSRF protection.

A session is created by signing in with an API key (or, when configured, OIDC as a listed
admin). It lives in this process only (a restart signs everyone out) and is named by a random
id in the cookie ``hs_console`` (``__Host-hs_console`` over https): HttpOnly, SameSite=Strict,
Secure when ``server_url`` is https, path ``/``. A session made from an API key ends when the key
is expired or deleted (checked on every request) and at the latest after ``MAX_AGE``.

Every state-changing request (POST) must carry the session's CSRF token, in the form field
``csrf`` or the ``X-CSRF-Token`` header, and a same-origin ``Origin`` header when the browser
sends one. Tokens are compared in constant time.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

MAX_AGE = 8 * 3600.0
MAX_SESSIONS = 1000


@dataclass
class Session:
    sid: str
    who: str                          # shown in the header: "API key hskey-api-abc…" / an e-mail
    csrf: str
    expires: float                    # time.monotonic() deadline
    api_key_id: int | None = None     # re-checked on every request
    flash: list[tuple[str, str]] = field(default_factory=list)   # (kind, text) shown once


class Sessions:
    def __init__(self, secure: bool) -> None:
        self.secure = secure
        self.cookie = "__Host-hs_console" if secure else "hs_console"
        self._by_id: dict[str, Session] = {}

    def create(self, who: str, *, api_key_id: int | None = None, key_expires: datetime | None = None,
               now: datetime | None = None) -> Session:
        self._gc()
        if len(self._by_id) >= MAX_SESSIONS:     # drop the oldest rather than grow without bound
            oldest = min(self._by_id.values(), key=lambda s: s.expires)
            self._by_id.pop(oldest.sid, None)
        ttl = MAX_AGE
        if key_expires is not None and now is not None:
            ttl = max(0.0, min(ttl, (key_expires - now).total_seconds()))
        s = Session(secrets.token_urlsafe(32), who, secrets.token_urlsafe(32), time.monotonic() + ttl, api_key_id)
        self._by_id[s.sid] = s
        return s

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        s = self._by_id.get(sid)
        if s is None or s.expires <= time.monotonic():
            self._by_id.pop(sid or "", None)
            return None
        return s

    def end(self, sid: str | None) -> None:
        self._by_id.pop(sid or "", None)

    def _gc(self) -> None:
        now = time.monotonic()
        for sid, s in list(self._by_id.items()):
            if s.expires <= now:
                del self._by_id[sid]

    def cookie_args(self, value: str, max_age: int | None = None) -> dict[str, Any]:
        return {"key": self.cookie, "value": value, "httponly": True, "samesite": "Strict",
                "secure": self.secure, "path": "/", "max_age": max_age}


def csrf_ok(session: Session, token: str | None) -> bool:
    return bool(token) and hmac.compare_digest(session.csrf.encode(), str(token).encode())


def same_origin(origin: str | None, host: str) -> bool:
    """No Origin header (older browsers) passes; one naming another host does not. Only the
    host[:port] is compared: behind a TLS-terminating proxy the scheme seen here differs."""
    if not origin:
        return True
    return urlsplit(origin).netloc.lower() == host.lower()
