"""A fake headscale API on a unix socket (stdlib http.server over AF_UNIX) that records
requests and answers with canned headscale-shaped JSON. Only for the CLI's own unit tests;
the end-to-end tests run the CLI against the real server."""

from __future__ import annotations

import io
import json
import os
import shutil
import socketserver
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from app.cli.main import main

NOW = datetime(2026, 7, 1, 12, 0, 0, tzinfo=UTC)


@dataclass
class Request:
    method: str
    path: str  # decoded path
    raw_path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


@dataclass
class FakeAPI:
    routes: dict[tuple[str, str], Any] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)

    def reply(self, method: str, path: str, body: Any = None, status: int = 200,
              content_type: str = "application/json") -> None:
        """Answer ``method path`` with ``body`` (dict → JSON, str → as is, callable(req) → dict)."""
        self.routes[(method, path)] = (status, body if body is not None else {}, content_type)

    @property
    def last(self) -> Request:
        return self.requests[-1]

    def handle(self, req: Request) -> tuple[int, bytes, str]:
        status, body, ctype = self.routes.get(
            (req.method, req.path), (404, {"code": 5, "message": f"no route {req.method} {req.path}"},
                                     "application/json"))
        if callable(body):
            body = body(req)
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        return status, data, ctype


def _handler(api: FakeAPI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            req = Request(
                method=self.command,
                path=unquote(parts.path),
                raw_path=parts.path,
                query={k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()},
                headers={k.lower(): v for k, v in self.headers.items()},
                body=json.loads(raw) if raw else None,
            )
            api.requests.append(req)
            status, data, ctype = api.handle(req)
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = _serve

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class _TCPServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


@pytest.fixture
def short_dir():
    d = tempfile.mkdtemp(prefix="hs", dir="/tmp")  # unix socket paths must stay short
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def api(short_dir):
    fake = FakeAPI()
    sock = os.path.join(short_dir, "hs.sock")
    server = _UnixServer(sock, _handler(fake))
    t = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    t.start()
    fake.socket_path = sock  # type: ignore[attr-defined]
    yield fake
    server.shutdown()
    server.server_close()


@pytest.fixture
def tcp_api():
    fake = FakeAPI()
    server = _TCPServer(("127.0.0.1", 0), _handler(fake))
    t = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    t.start()
    fake.address = f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    yield fake
    server.shutdown()
    server.server_close()


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def json(self) -> Any:
        return json.loads(self.out)


@pytest.fixture
def config_file(short_dir, api):
    path = os.path.join(short_dir, "config.yaml")
    with open(path, "w") as f:
        f.write(f"unix_socket: {api.socket_path}\n")
    return path


@pytest.fixture
def run(config_file) -> Callable[..., Result]:
    """Run the CLI against the fake API: run("users", "list", stdin="y\\n", env={...})."""

    def _run(*argv: str, stdin: str = "", env: dict | None = None) -> Result:
        out, err = io.StringIO(), io.StringIO()
        e = {"HEADSCALE_CONFIG": config_file, **(env or {})}
        code = main(list(argv), env=e, stdin=io.StringIO(stdin), stdout=out, stderr=err, now=lambda: NOW)
        return Result(code, out.getvalue(), err.getvalue())

    return _run


def cells(line: str) -> list[str]:
    """The stripped cells of one table line."""
    return [c.strip() for c in line.split("|")]


# --- canned headscale-shaped objects ------------------------------------------------------------

USER = {
    "id": "1", "name": "alice", "createdAt": "2026-06-01T10:00:00Z", "displayName": "Alice A.",
    "email": "alice@example.com", "providerId": "", "provider": "", "profilePicUrl": "",
}
USER2 = {**USER, "id": "2", "name": "bob", "displayName": "", "email": ""}

MKEY = "mkey:" + "11" * 32
NKEY = "nodekey:" + "22" * 32

NODE = {
    "id": "7",
    "machineKey": MKEY,
    "nodeKey": NKEY,
    "discoKey": "discokey:" + "33" * 32,
    "ipAddresses": ["100.64.0.7", "fd7a:115c:a1e0::7"],
    "name": "laptop",
    "user": USER,
    "lastSeen": "2026-07-01T11:59:00.123456789Z",
    "expiry": None,
    "preAuthKey": {"id": "3", "ephemeral": True, "reusable": False, "used": True, "user": USER,
                   "key": "hskey-auth-abcdef-***", "expiration": "2026-07-01T13:00:00Z",
                   "createdAt": "2026-07-01T12:00:00Z", "aclTags": []},
    "createdAt": "2026-06-01T10:00:00Z",
    "registerMethod": "REGISTER_METHOD_AUTH_KEY",
    "givenName": "laptop-1",
    "online": True,
    "approvedRoutes": ["10.0.0.0/8"],
    "availableRoutes": ["10.0.0.0/8", "192.168.0.0/24"],
    "subnetRoutes": ["10.0.0.0/8"],
    "tags": ["tag:a", "tag:b"],
}
NODE2 = {**NODE, "id": "8", "name": "server", "givenName": "server", "online": False, "tags": [],
         "expiry": "2026-06-30T00:00:00Z", "preAuthKey": None, "approvedRoutes": [], "availableRoutes": [],
         "subnetRoutes": [], "ipAddresses": ["100.64.0.8"]}

PREAUTH = {"user": USER, "id": "3", "key": "hskey-auth-abcdefghijkl-SECRETSECRET", "reusable": True,
           "ephemeral": False, "used": False, "expiration": "2026-07-01T13:00:00Z",
           "createdAt": "2026-07-01T12:00:00Z", "aclTags": []}
APIKEY = {"id": "4", "prefix": "hskey-api-abcdefghijkl-***", "expiration": "2026-09-29T12:00:00Z",
          "createdAt": "2026-07-01T12:00:00Z", "lastSeen": None}
