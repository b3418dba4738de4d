"""Hostile or broken input on /api/v1 (issue 11, section 2): every bad request is a 4xx with a
JSON error, never a 500.

The reproducers the black-box probe found come first; then a table-driven sweep throws wrong
types, huge numbers, negative ids, non-UTF-8 text and nulls at every /api/v1 route the app
declares (so routes added later are swept too).
"""

from __future__ import annotations

import asyncio
import json
import re

import pytest

from app.server.web import create_app
from tests.server.conftest import user_and_key

OVERFLOW_TIME = "9999-12-31T23:59:59-23:59"
DEEP = b'{"name":' + b"[" * 15_000 + b"]" * 15_000 + b"}"


class Api:
    def __init__(self, services, token: str) -> None:
        self.services = services
        self.addr = services.addresses["listen"]
        self.token = token

    async def call(self, method: str, path: str, body: bytes | dict | None = None) -> tuple[int, bytes]:
        status, payload = await self._call(method, path, body)
        if status == 401:   # the sweep expired or deleted its own key: a new one, and again
            _, self.token = await self.services.state.create_api_key(None)
            status, payload = await self._call(method, path, body)
        return status, payload

    async def _call(self, method: str, path: str, body: bytes | dict | None = None) -> tuple[int, bytes]:
        raw = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else b"")
        reader, writer = await asyncio.open_connection(*self.addr)
        try:
            writer.write(f"{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {self.token}\r\n"
                         f"Content-Type: application/json\r\nContent-Length: {len(raw)}\r\n"
                         "Connection: close\r\n\r\n".encode() + raw)
            await writer.drain()
            data = await asyncio.wait_for(reader.read(), 15)
        finally:
            writer.close()
        head, _, payload = data.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        if b"transfer-encoding: chunked" in head.lower():
            out, rest = b"", payload
            while rest:
                size, _, rest = rest.partition(b"\r\n")
                n = int(size, 16)
                if n == 0:
                    break
                out, rest = out + rest[:n], rest[n + 2:]
            payload = out
        return status, payload


@pytest.fixture
async def api(server):
    _, token = await server.state.create_api_key(None)
    return Api(server, token)


def assert_json_4xx(status: int, payload: bytes, what: str) -> dict:
    assert 400 <= status < 500, f"{what}: {status} {payload[:300]!r}"
    body = json.loads(payload)
    assert isinstance(body.get("message"), str) and body["message"], what
    assert "Traceback" not in body["message"]
    return body


# ---- the probe's reproducers ----------------------------------------------------------------

async def test_reproducers_get_a_json_400(server, api):
    user, _ = await user_and_key(server)
    from tests.server.conftest import new_client

    c = await new_client(server)
    _, key = await user_and_key(server)
    await c.register(key, hostinfo={"Hostname": "n"})
    nid = next(iter(server.state.nodes))
    cases = [
        ("POST", "/api/v1/user", b'{"name": "\\ud800"}'),
        ("POST", "/api/v1/user", b'{"name": "ok", "displayName": "\\udfff"}'),
        ("POST", "/api/v1/user", DEEP),
        ("POST", "/api/v1/apikey/expire", b'{"prefix": "\\ud800"}'),
        ("POST", "/api/v1/preauthkey", {"user": str(user.id), "expiration": OVERFLOW_TIME}),
        ("POST", "/api/v1/apikey", {"expiration": OVERFLOW_TIME}),
        ("POST", f"/api/v1/node/{nid}/expire", {"expiry": OVERFLOW_TIME}),
        ("POST", f"/api/v1/node/{nid}/expire?expiry=9999-12-31T23%3A59%3A59-23%3A59", None),
        ("POST", "/api/v1/node/register?user=%C2%B2&key=hskey-reg-x", None),
        ("POST", "/api/v1/node/register", {"user": "²", "key": "x"}),
        ("POST", "/api/v1/auth/register", {"user": "²", "authId": "x"}),
        ("POST", "/api/v1/debug/node", {"user": "²", "name": "n", "key": "x"}),
        ("POST", "/api/v1/debug/node", {"user": "9" * 5000, "name": "n", "key": "x"}),
        ("GET", "/api/v1/node/%C2%B2", None),
        ("GET", "/api/v1/user?id=%D9%A3", None),      # an Arabic-Indic digit: int() would take it
        ("DELETE", "/api/v1/user/1_0", None),
        # PostgreSQL cannot store a NUL character: refused before it reaches any database.
        ("POST", "/api/v1/user", {"name": "ok2", "displayName": "a\u0000b"}),
        ("POST", "/api/v1/user", {"name": "ok3", "email": "\u0000@example.com"}),
        ("PUT", "/api/v1/policy", {"policy": '{"acls": []} // \u0000'}),
        ("POST", "/api/v1/preauthkey", {"user": str(user.id), "aclTags": ["tag:a\u0000"]}),
        ("POST", "/api/v1/apikey/expire", {"prefix": "a\u0000"}),
    ]
    users_before = dict(server.state.users)
    for method, path, body in cases:
        status, payload = await api.call(method, path, body)
        assert_json_4xx(status, payload, f"{method} {path} {body!r:.80}")
    assert dict(server.state.users) == users_before
    await c.close()


async def test_debug_node_routes_must_be_prefixes(server, api):
    user, _ = await user_and_key(server)
    status, payload = await api.call("POST", "/api/v1/debug/node", {
        "user": user.name, "name": "n", "key": "hskey-authreq-" + "a" * 24, "routes": ["garbage"]})
    assert status == 400 and b"garbage" in payload


async def test_an_unexpected_failure_is_a_json_500_without_internals(server, api, caplog):
    # A store that fails in a way no route expects (the database went away under us).
    await server.state.db.close()
    status, payload = await api.call("GET", "/api/v1/apikey")
    assert status == 500
    body = json.loads(payload)
    assert body["code"] == 13 and "Traceback" not in payload.decode() and "sqlite" not in payload.decode().lower()
    assert caplog.text.count("GET /api/v1/apikey failed") == 1


# ---- the sweep --------------------------------------------------------------------------------

PATH_VALUES = ["0", "-1", "99999999999999999999999", "%C2%B2", "%ED%A0%80", "%FF", "null", "1e5", "%00", "a" * 300, "1",
               "a%00b"]
QUERY = ("?id=%FF&user=%C2%B2&expiry=9999-12-31T23%3A59%3A59-23%3A59&confirmed=true&key=%ED%A0%80"
         "&name=%00&disableExpiry=%FF")
FIELDS = ["name", "displayName", "email", "pictureUrl", "user", "reusable", "ephemeral", "expiration", "aclTags",
          "id", "prefix", "key", "tags", "routes", "authId", "policy", "expiry", "disableExpiry", "newName"]
VALUES: list[object] = [None, -1, 2**64, 1e308, True, {}, [{"a": 1}], ["\ud800"], "²", OVERFLOW_TIME, "x" * 10_000,
                        ["a\u0000"]]
RAW_BODIES = [b"null", b"[]", b"5", b'"x"', b"{", b"\xff\xfe{}", b'{"name": "\xed\xa0\x80"}', b"{" * 15_000,
              b'{"id": NaN}', b'{"expiration": 1e999}']


# A plausible body: one field at a time gets a wrong value, so checks of the other fields
# cannot hide a field that reaches the database unchecked.
BASE = {"name": "sweep", "displayName": "d", "email": "e@example.com", "pictureUrl": "", "user": "1",
        "reusable": False, "ephemeral": False, "expiration": "2030-01-01T00:00:00Z", "aclTags": [], "id": "1",
        "prefix": "x", "key": "x", "tags": [], "routes": [], "authId": "x", "policy": "{}",
        "expiry": "2030-01-01T00:00:00Z", "disableExpiry": False, "newName": "n"}
ONE_FIELD_VALUES: list[object] = ["a\u0000b", 5, [1]]


def api_rules(services) -> list[tuple[str, str]]:
    out = []
    for rule in create_app(services).url_map.iter_rules():
        if rule.rule.startswith("/api/v1"):
            out += [(m, rule.rule) for m in sorted(rule.methods - {"HEAD", "OPTIONS"})]
    return out


def bodies() -> list[bytes]:
    out = list(RAW_BODIES)
    out += [json.dumps(dict.fromkeys(FIELDS, v)).encode() for v in VALUES]
    out += [json.dumps({f: VALUES[i % len(VALUES)]}).encode() for i, f in enumerate(FIELDS)]
    return out


async def test_every_api_route_answers_malformed_input_with_a_4xx(server, api):
    await user_and_key(server)
    rules = api_rules(server)
    assert len(rules) >= 25
    seen = 0
    statuses: dict[int, int] = {}
    for method, rule in rules:
        params = re.findall(r"<(?:\w+:)?(\w+)>", rule)
        plain = re.sub(r"<(?:\w+:)?\w+>", "1", rule)
        for body in bodies():
            status, payload = await api.call(method, plain + QUERY, body)
            statuses[status] = statuses.get(status, 0) + 1
            assert status < 500 and status != 401, f"{method} {plain} {body[:80]!r}: {status} {payload[:300]!r}"
            seen += 1
        if method in ("POST", "PUT", "DELETE"):
            for field in FIELDS:
                for value in ONE_FIELD_VALUES:
                    body = json.dumps(dict(BASE, **{field: value})).encode()
                    status, payload = await api.call(method, plain, body)
                    statuses[status] = statuses.get(status, 0) + 1
                    assert status < 500, f"{method} {plain} {field}={value!r}: {status} {payload[:300]!r}"
                    seen += 1
        for name in params:
            for value in PATH_VALUES:
                path = re.sub(rf"<(?:\w+:)?{name}>", value, plain if len(params) == 1 else rule)
                path = re.sub(r"<(?:\w+:)?\w+>", "1", path)
                status, payload = await api.call(method, path, b"{}")
                statuses[status] = statuses.get(status, 0) + 1
                assert status < 500, f"{method} {path}: {status} {payload[:300]!r}"
                seen += 1
    assert seen > 2000
    print(f"{seen} requests on {len(rules)} routes: {dict(sorted(statuses.items()))}")
