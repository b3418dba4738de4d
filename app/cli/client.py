"""HTTP client of the server's REST API (HEADSCALE.md §3.1), stdlib only.

Local mode (no ``cli.address``): plain HTTP over the unix socket ``unix_socket``, no
authentication; the socket's permissions are the access control. Remote mode: HTTPS (or the
scheme given in ``cli.address``) with ``Authorization: Bearer <cli.api_key>``.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import ssl
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from app import __version__


class CliError(Exception):
    """A user-facing error: printed as ``Error: <message>``, exit status ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class ApiError(CliError):
    """The server answered with an error status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._socket_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def segment(value: Any) -> str:
    """One URL path segment, percent-encoded (names may contain anything)."""
    return quote(str(value), safe="")


def base_url(address: str) -> str:
    """``cli.address`` → base URL: a bare host[:port] means https, an explicit scheme is kept."""
    return address.rstrip("/") if "://" in address else "https://" + address.rstrip("/")


class ApiClient:
    def __init__(
        self,
        *,
        socket_path: str | None = None,
        address: str | None = None,
        api_key: str = "",
        timeout: float = 5.0,
        insecure: bool = False,
    ) -> None:
        if bool(socket_path) == bool(address):
            raise ValueError("give exactly one of socket_path and address")
        self.socket_path = socket_path
        self.timeout = timeout if timeout > 0 else None
        self.api_key = api_key
        self.insecure = insecure
        self.base = base_url(address) if address else "http://localhost"
        parts = urlsplit(self.base)
        if address and parts.scheme not in ("http", "https"):
            raise CliError(f"cli.address: unsupported scheme {parts.scheme!r} (use https:// or http://)")
        self._scheme, self._netloc, self._prefix = parts.scheme, parts.netloc, parts.path.rstrip("/")

    @classmethod
    def from_config(cls, cfg: Any) -> ApiClient:
        if cfg.cli.address:
            if not cfg.cli.api_key:
                raise CliError("HEADSCALE_CLI_API_KEY environment variable needs to be set "
                               "(cli.api_key) to use a remote server (cli.address)")
            return cls(address=cfg.cli.address, api_key=cfg.cli.api_key,
                       timeout=cfg.cli.timeout, insecure=cfg.cli.insecure)
        return cls(socket_path=cfg.unix_socket, timeout=cfg.cli.timeout)

    @property
    def where(self) -> str:
        return f"unix socket {self.socket_path}" if self.socket_path else self.base

    # --- requests -----------------------------------------------------------------------------

    def get(self, path: str, query: dict | None = None) -> Any:
        return self.request("GET", path, query=query)

    def post(self, path: str, body: Any = None, query: dict | None = None) -> Any:
        return self.request("POST", path, query=query, body=body)

    def put(self, path: str, body: Any = None) -> Any:
        return self.request("PUT", path, body=body)

    def delete(self, path: str, query: dict | None = None) -> Any:
        return self.request("DELETE", path, query=query)

    def request(self, method: str, path: str, *, query: dict | None = None, body: Any = None) -> Any:
        target = self._prefix + path
        if query:
            clean = {k: _query_value(v) for k, v in query.items() if v is not None and v != ""}
            if clean:
                target += "?" + urlencode(clean)
        headers = {"Accept": "application/json", "User-Agent": f"headscale-cli/{__version__}"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["Authorization"] = "Bearer " + self.api_key
        conn = self._connection()
        try:
            try:
                conn.request(method, target, body=data, headers=headers)
                resp = conn.getresponse()
                status, reason = resp.status, resp.reason
                raw = resp.read()
            except OSError as e:
                raise self._connect_error(e) from None
            except http.client.HTTPException as e:
                raise CliError(f"bad HTTP response from {self.where}: {e.__class__.__name__}") from None
        finally:
            conn.close()
        if not 200 <= status < 300:
            raise ApiError(self._error_message(status, reason, raw), status)
        if not raw.strip():
            return {}
        try:
            return json.loads(raw)
        except ValueError:
            raise CliError(f"unexpected response from {self.where}: not JSON") from None

    def _connection(self) -> http.client.HTTPConnection:
        if self.socket_path:
            return _UnixHTTPConnection(self.socket_path, self.timeout)
        if self._scheme == "https":
            ctx = ssl.create_default_context()
            if self.insecure:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            return http.client.HTTPSConnection(self._netloc, timeout=self.timeout, context=ctx)
        return http.client.HTTPConnection(self._netloc, timeout=self.timeout)

    def _connect_error(self, e: OSError) -> CliError:
        hint = ("Is the server running? Start it with 'headscale serve', or point -c/--config "
                "(unix_socket) at the socket of the running server.")
        if isinstance(e, (TimeoutError, socket.timeout)):
            return CliError(f"timed out after {self.timeout:g}s waiting for headscale at {self.where} "
                            "(cli.timeout)")
        if self.socket_path:
            if isinstance(e, FileNotFoundError):
                return CliError(f"cannot connect to headscale: socket {self.socket_path} does not exist. {hint}")
            if isinstance(e, ConnectionRefusedError):
                return CliError(f"cannot connect to headscale: nothing is listening on {self.socket_path}. {hint}")
            if isinstance(e, PermissionError):
                return CliError(f"unable to read/write to headscale socket {self.socket_path!r}, "
                                "do you have the correct permissions?")
        if isinstance(e, ssl.SSLError):
            reason = getattr(e, "reason", None) or e.__class__.__name__
            return CliError(f"TLS error talking to {self.where}: {reason} "
                            "(cli.insecure skips certificate verification)")
        return CliError(f"cannot connect to headscale at {self.where}: {e.strerror or e}")

    def _error_message(self, status: int, reason: str, raw: bytes) -> str:
        message = error_message_from_body(raw)
        if not message:
            message = f"HTTP {status} {reason}".strip()
        if status == 401 and not self.socket_path:
            message += " (check cli.api_key / HEADSCALE_CLI_API_KEY)"
        return message


def error_message_from_body(raw: bytes) -> str:
    """The message of an error body: grpc-gateway ``{code, message}``, RFC 7807 problem+json
    (``detail`` + ``errors[].message``), ``{"error": …}``, or plain text (one line)."""
    text = raw.decode("utf-8", "replace").strip()
    if not text:
        return ""
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        parts: list[str] = []
        for key in ("message", "detail", "error"):
            value = data.get(key)
            if isinstance(value, str) and value:
                parts.append(value)
                break
        errors = data.get("errors")
        if isinstance(errors, list):
            parts += [e["message"] for e in errors if isinstance(e, dict) and isinstance(e.get("message"), str)
                      and e["message"] not in parts]
        if not parts and isinstance(data.get("title"), str):
            parts.append(data["title"])
        if parts:
            return _one_line(": ".join(parts))
    elif isinstance(data, str):
        return _one_line(data)
    if text.startswith("<"):  # an HTML error page: keep its words only
        text = re.sub(r"(?is)<(script|style|title)\b.*?</\1>", " ", text)
        text = re.sub(r"<[^>]+>", "\n", text)
    return _one_line(text)


def _one_line(text: str, limit: int = 500) -> str:
    line = "; ".join(p.strip() for p in text.splitlines() if p.strip())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _query_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)
