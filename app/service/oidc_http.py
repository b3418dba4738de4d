"""The OpenID provider over HTTPS: discovery, JWKS, token and userinfo requests.

Blocking urllib calls run in a worker thread. TLS trust is the system's (``SSL_CERT_FILE``
adds a private CA). Bodies are capped; errors become ProviderError with a message that never
quotes a code, a token or the client secret.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlencode, urlsplit

MAX_BODY = 1 << 20
TIMEOUT = 10.0


class ProviderError(Exception):
    """The provider could not be reached or answered badly. ``status`` is its HTTP status (0:
    no answer); ``error`` its OAuth error code when it sent one."""

    def __init__(self, message: str, status: int = 0, error: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.error = error


def _where(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _request(url: str, data: bytes | None, headers: dict[str, str], timeout: float) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, headers={"User-Agent": "pyheadscale", **headers})
    ctx = ssl.create_default_context()
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ctx) as resp:
            return resp.status, resp.read(MAX_BODY + 1)
    except urllib.error.HTTPError as exc:
        body = exc.read(MAX_BODY + 1) if exc.fp else b""
        return exc.code, body
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ProviderError(f"cannot reach {_where(url)}: {reason}") from None


def _json(url: str, status: int, body: bytes) -> Any:
    if len(body) > MAX_BODY:
        raise ProviderError(f"{_where(url)} answered with more than {MAX_BODY} bytes", status)
    try:
        value = json.loads(body)
    except ValueError:
        raise ProviderError(f"{_where(url)} answered HTTP {status} without JSON", status) from None
    if status >= 400:
        err = value.get("error") if isinstance(value, dict) else ""
        err = err if isinstance(err, str) else ""
        # error_description is the provider's text for a person; it names no secret.
        desc = value.get("error_description") if isinstance(value, dict) else ""
        desc = desc[:200] if isinstance(desc, str) else ""
        raise ProviderError(f"{_where(url)} answered HTTP {status} {err} {desc}".rstrip(), status, err)
    return value


async def get_json(url: str, *, bearer: str = "", timeout: float = TIMEOUT) -> Any:
    headers = {"Accept": "application/json"}
    if bearer:
        headers["Authorization"] = f"Bearer {bearer}"
    status, body = await asyncio.to_thread(_request, url, None, headers, timeout)
    return _json(url, status, body)


async def post_form(url: str, form: dict[str, str], headers: dict[str, str], *, timeout: float = TIMEOUT) -> Any:
    data = urlencode(form).encode()
    status, body = await asyncio.to_thread(
        _request, url, data, {"Content-Type": "application/x-www-form-urlencoded", **headers}, timeout)
    return _json(url, status, body)
