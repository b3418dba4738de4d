"""The request log: one line per request, no secrets in it, JSON when asked."""

from __future__ import annotations

import json
import logging

from app.server import clientaddr
from app.server.requestlog import JsonFormatter, log_request, safe_path
from tests.server.apiclient import Api, api_with_key


def test_safe_path_keeps_no_secret():
    assert safe_path("/api/v1/node/register", b"user=bob&key=hskey-authreq-0123") == \
        "/api/v1/node/register?user=bob&key=***"
    assert safe_path("/oidc/callback", "code=abc&state=def") == "/oidc/callback?code=***&state=***"
    assert safe_path("/register/hskey-authreq-0123456789abcdef01234567") == "/register/hskey-authreq-***"
    assert safe_path("/auth/hskey-authreq-0123456789abcdef01234567") == "/auth/hskey-authreq-***"
    assert len(safe_path("/" + "a" * 5000)) < 400


def test_json_lines():
    rec = []

    class Keep(logging.Handler):
        def emit(self, record):
            rec.append(JsonFormatter().format(record))

    h = Keep()
    logger = logging.getLogger("headscale.http")
    logger.addHandler(h)
    old = logger.level
    logger.setLevel(logging.INFO)
    try:
        log_request("GET", '/x?"q"', 200, 0.0123, "192.0.2.1")
    finally:
        logger.removeHandler(h)
        logger.setLevel(old)
    doc = json.loads(rec[0])
    assert doc["method"] == "GET" and doc["path"] == '/x?"q"' and doc["status"] == 200
    assert doc["duration_ms"] == 12.3 and doc["client"] == "192.0.2.1" and doc["level"] == "info"
    assert doc["logger"] == "headscale.http" and doc["time"].endswith("+00:00")


async def test_every_request_is_logged_once(server, caplog):
    caplog.set_level(logging.INFO, logger="headscale.http")
    api = await api_with_key(server)
    await api.ok("GET", "/api/v1/node")
    await Api(server, "hskey-api-wrong-wrongwrong").call("GET", "/api/v1/user?name=x")
    await api.call("POST", "/api/v1/node/register?user=x&key=hskey-authreq-00112233445566778899aabb")
    await api.raw("GET", "/health")
    await api.raw("GET", "/register/hskey-authreq-00112233445566778899aabb")
    lines = [r.http for r in caplog.records if r.name == "headscale.http"]
    assert [(x["method"], x["path"], x["status"]) for x in lines] == [
        ("GET", "/api/v1/node", 200),
        ("GET", "/api/v1/user?name=x", 401),
        ("POST", "/api/v1/node/register?user=x&key=***", 404),
        ("GET", "/health", 200),
        ("GET", "/register/hskey-authreq-***", 200),
    ]
    assert all(x["client"] == "127.0.0.1" and 0 <= x["duration_ms"] < 10_000 for x in lines)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert api.key not in text and "00112233445566778899aabb" not in text


async def test_client_address_honours_trusted_proxies(server, caplog):
    caplog.set_level(logging.INFO, logger="headscale.http")
    api = Api(server)
    clientaddr.configure(["127.0.0.0/8"])
    try:
        await api.raw("GET", "/health", headers={"X-Forwarded-For": "198.51.100.9"})
    finally:
        clientaddr.configure([])
    await api.raw("GET", "/health", headers={"X-Forwarded-For": "198.51.100.9"})
    clients = [r.http["client"] for r in caplog.records if r.name == "headscale.http"]
    assert clients == ["198.51.100.9", "127.0.0.1"]
