"""HTTP side endpoints of the DERP server (app/server/derp_http.py) through Quart's test client."""

import json

import pytest
from quart import Quart

from app.server.derp_http import derp_blueprint

NODE = "nodekey:" + "ab" * 32


@pytest.fixture
def client():
    allowed = {NODE}
    asked = []

    async def verify(node_key: str) -> bool:
        asked.append(node_key)
        return node_key in allowed

    app = Quart(__name__)
    app.register_blueprint(
        derp_blueprint(lambda: ["localhost", "127.0.0.1", "no-such-host.invalid", ""], verify)
    )
    c = app.test_client()
    c.asked = asked
    return c


@pytest.mark.parametrize("path", ["/derp/probe", "/derp/latency-check"])
async def test_probe_endpoints(client, path):
    for method in ("GET", "HEAD"):
        resp = await client.open(path, method=method)
        assert resp.status_code == 200
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        assert await resp.get_data() == b""
    for method in ("POST", "PUT", "DELETE", "OPTIONS"):
        resp = await client.open(path, method=method)
        assert resp.status_code == 405


async def test_bootstrap_dns_resolves_known_hosts_and_skips_failures(client):
    resp = await client.get("/bootstrap-dns?q=ignored.example")
    assert resp.status_code == 200 and resp.content_type == "application/json"
    body = await resp.get_json()
    assert body["127.0.0.1"] == ["127.0.0.1"]
    assert "127.0.0.1" in body["localhost"] or "::1" in body["localhost"]
    assert "no-such-host.invalid" not in body and "" not in body


async def test_bootstrap_dns_with_nothing_resolvable_is_empty_object():
    async def never(_: str) -> bool:
        return False

    app = Quart(__name__)
    app.register_blueprint(derp_blueprint(lambda: ["no-such-host.invalid"], never))
    resp = await app.test_client().get("/bootstrap-dns")
    assert resp.status_code == 200 and await resp.get_json() == {}


async def test_generate_204_echoes_valid_challenges_only(client):
    resp = await client.get("/generate_204", headers={"X-Tailscale-Challenge": "abc.DEF-1_2:3"})
    assert resp.status_code == 204
    assert resp.headers["X-Tailscale-Response"] == "response abc.DEF-1_2:3"
    for bad in ("has space", "semi;colon", "x" * 65, "ü"):
        resp = await client.get("/generate_204", headers={"X-Tailscale-Challenge": bad})
        assert resp.status_code == 204 and "X-Tailscale-Response" not in resp.headers
    resp = await client.get("/generate_204", headers={"X-Tailscale-Challenge": "y" * 64})
    assert resp.headers["X-Tailscale-Response"] == "response " + "y" * 64
    resp = await client.get("/generate_204")
    assert resp.status_code == 204 and "X-Tailscale-Response" not in resp.headers


async def test_verify_allows_and_denies(client):
    resp = await client.post("/verify", data=json.dumps({"NodePublic": NODE, "Source": "100.64.0.1"}))
    assert resp.status_code == 200 and await resp.get_json() == {"Allow": True}
    other = "nodekey:" + "cd" * 32
    resp = await client.post("/verify", data=json.dumps({"nodepublic": other}))  # Go matches names loosely
    assert await resp.get_json() == {"Allow": False}
    upper = "nodekey:" + "AB" * 32
    resp = await client.post("/verify", data=json.dumps({"NodePublic": upper}))
    assert await resp.get_json() == {"Allow": True}  # normalised before the lookup
    assert client.asked == [NODE, other, NODE]


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b"{}",
        b'{"NodePublic": 5}',
        b'{"NodePublic": "mkey:' + b"ab" * 32 + b'"}',
        b'{"NodePublic": "nodekey:abc"}',
    ],
)
async def test_verify_bad_requests(client, body):
    resp = await client.post("/verify", data=body)
    assert resp.status_code == 400
    assert client.asked == []


async def test_verify_body_limit(client):
    body = json.dumps({"NodePublic": NODE, "Pad": "x" * 5000})
    resp = await client.post("/verify", data=body)
    assert resp.status_code == 413
    resp = await client.get("/verify")
    assert resp.status_code == 405
