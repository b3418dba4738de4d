"""The OpenAPI document stays true: every /api/v1 route is in it (and nothing else), real
responses match its schemas, and schemathesis finds no 5xx and no traceback."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sys
from datetime import timedelta
from typing import ClassVar

import jsonschema
import pytest
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from app.core.authid import new_auth_id
from app.server.openapi import document
from tests.server.apiclient import Api, api_with_key
from tests.server.conftest import new_client

DOC = document()


def _shape(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", re.sub(r"<(?:[^:>]+:)?[^>]+>", "{}", path))


def doc_operations() -> set[tuple[str, str]]:
    return {(m.upper(), _shape(p)) for p, ops in DOC["paths"].items() for m in ops}


def test_document_is_valid_openapi_31():
    from jsonschema.validators import Draft202012Validator

    assert DOC["openapi"].startswith("3.1")
    for schema in DOC["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)


async def test_every_route_is_documented(server):
    from app.server.web import create_app

    app = create_app(server)
    routes = {(m, _shape(r.rule)) for r in app.url_map.iter_rules() if r.rule.startswith("/api/")
              for m in r.methods - {"HEAD", "OPTIONS"}}
    assert routes == doc_operations(), (routes - doc_operations(), doc_operations() - routes)


# The document as a schema resource, so "$ref"s inside response schemas resolve against it.
REGISTRY = Registry().with_resource("urn:doc", DRAFT202012.create_resource(DOC))


def _rebase(schema):
    """Point the document's local "$ref"s at the registered resource."""
    if isinstance(schema, dict):
        return {k: ("urn:doc" + v if k == "$ref" else _rebase(v)) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_rebase(x) for x in schema]
    return schema


class Checked(Api):
    """Validates every response against the document; records which operations were seen."""

    seen: ClassVar[set[tuple[str, str]]] = set()

    def _op(self, method: str, path: str) -> tuple[str, dict]:
        bare = path.split("?", 1)[0]
        for p, ops in DOC["paths"].items():
            if method.lower() in ops and re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", p), bare):
                return p, ops[method.lower()]
        raise AssertionError(f"{method} {bare} is not in the document")

    async def call(self, method: str, path: str, body=None, **kw):
        status, doc = await super().call(method, path, body, **kw)
        p, op = self._op(method, path)
        resp = op["responses"].get(str(status)) or op["responses"].get("default")
        assert resp is not None, (method, path, status, "status not documented")
        schema = _rebase(resp["content"]["application/json"]["schema"])
        jsonschema.Draft202012Validator(schema, registry=REGISTRY).validate(doc)
        Checked.seen.add((method.upper(), p))
        return status, doc


async def test_real_responses_match_the_document(server):
    Checked.seen = set()
    plain = await api_with_key(server)
    api = Checked(server, plain.key)
    assert (await api.call("GET", "/api/v1/openapi.json"))[0] == 200
    assert (await api.call("GET", "/api/v1/health"))[0] == 200
    assert (await api.call("GET", "/api/v1/policy"))[0] == 404
    pol = '{"tagOwners": {"tag:a": ["u1@"]}, "acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}]}'
    await api.ok("PUT", "/api/v1/policy", {"policy": pol})
    await api.ok("GET", "/api/v1/policy")
    await api.ok("POST", "/api/v1/policy/check", {"policy": pol})
    assert (await api.call("POST", "/api/v1/policy/check", {"policy": "{"}))[0] == 400
    u = (await api.ok("POST", "/api/v1/user", {"name": "u1", "email": "u1@example.com"}))["user"]
    assert (await api.call("POST", "/api/v1/user", {"name": "u1"}))[0] == 409
    await api.ok("GET", "/api/v1/user?name=u1")
    await api.ok("POST", f"/api/v1/user/{u['id']}/rename/u2")
    await api.ok("POST", f"/api/v1/user/{u['id']}/rename/u1")
    k = (await api.ok("POST", "/api/v1/preauthkey", {"user": u["id"], "reusable": True}))["preAuthKey"]
    tk = (await api.ok("POST", "/api/v1/preauthkey", {"aclTags": ["tag:a"]}))["preAuthKey"]
    await api.ok("GET", "/api/v1/preauthkey")
    await api.ok("POST", "/api/v1/preauthkey/expire", {"id": tk["id"]})
    await api.ok("DELETE", f"/api/v1/preauthkey?id={tk['id']}")
    ak = (await api.ok("POST", "/api/v1/apikey", {"expiration": (server.state.now() + timedelta(days=1)).isoformat()}))
    listed = (await api.ok("GET", "/api/v1/apikey"))["apiKeys"]
    masked = next(k["prefix"] for k in listed if ak["apiKey"].startswith(k["prefix"].rstrip("*")))
    prefix = masked.removeprefix("hskey-api-").rstrip("*").removesuffix("-")
    await api.ok("POST", "/api/v1/apikey/expire", {"prefix": prefix})
    await api.ok("DELETE", f"/api/v1/apikey/{prefix}")
    c = await new_client(server)
    await c.register(k["key"], hostinfo={"Hostname": "n1", "RoutableIPs": ["10.0.0.0/24"]})
    try:
        nid = (await api.ok("GET", "/api/v1/node"))["nodes"][0]["id"]
        await api.ok("GET", f"/api/v1/node/{nid}")
        await api.ok("POST", f"/api/v1/node/{nid}/rename/n2")
        await api.ok("POST", f"/api/v1/node/{nid}/approve_routes", {"routes": ["10.0.0.0/24"]})
        await api.ok("POST", f"/api/v1/node/{nid}/expire?disableExpiry=true")
        await api.ok("POST", "/api/v1/node/backfillips?confirmed=true")
        await api.ok("POST", f"/api/v1/node/{nid}/tags", {"tags": ["tag:a"]})
        await api.ok("DELETE", f"/api/v1/node/{nid}")
        assert (await api.call("GET", f"/api/v1/node/{nid}"))[0] == 404
        aid = new_auth_id()
        await api.ok("POST", "/api/v1/debug/node", {"user": "u1", "key": aid, "name": "d1"})
        n = (await api.ok("POST", "/api/v1/auth/register", {"user": "u1", "authId": aid}))["node"]
        aid = new_auth_id()
        await api.ok("POST", "/api/v1/debug/node", {"user": "u1", "key": aid, "name": "d2"})
        await api.ok("POST", f"/api/v1/node/register?user=u1&key={aid}")
        assert (await api.call("POST", "/api/v1/auth/approve", {"authId": new_auth_id()}))[0] == 404
        assert (await api.call("POST", "/api/v1/auth/reject", {"authId": new_auth_id()}))[0] == 404
        for node in (await api.ok("GET", "/api/v1/node"))["nodes"]:
            await api.ok("DELETE", f"/api/v1/node/{node['id']}")
        assert n["user"]["name"] == "u1"
        await api.ok("DELETE", f"/api/v1/user/{u['id']}")
    finally:
        await c.close()
    assert (await Checked(server, "nope").call("GET", "/api/v1/user"))[0] == 401
    missing = {(m, p) for m, p in ((m.upper(), p) for p, ops in DOC["paths"].items() for m in ops)} - Checked.seen
    assert not missing, f"operations never exercised here: {sorted(missing)}"


async def _schemathesis(api: Api, tmp_path, examples: str, *select: str) -> str:
    st = os.path.join(os.path.dirname(sys.executable), "st")
    proc = await asyncio.create_subprocess_exec(
        st, "run", f"{api.base}/api/v1/openapi.json", "-H", f"Authorization: Bearer {api.key}",
        "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        "--max-examples", examples, "--phases", "examples,coverage,fuzzing", "--workers", "1",
        "--generation-database", "none", "--seed", "1", "--no-color", "--request-timeout", "20",
        "--report-dir", str(tmp_path), "--exclude-path", "/api/v1/openapi.json", *select,
        cwd=str(tmp_path), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 600)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-6000:]
    assert "Authentication failed" not in text, text[-3000:]
    return text


@pytest.mark.slow
async def test_schemathesis_finds_no_server_error(server, caplog, tmp_path):
    """A short schemathesis pass over every operation (SCHEMATHESIS_MAX_EXAMPLES=100 for a long one)."""
    api = await api_with_key(server)
    await server.state.create_user("someone")
    examples = os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "3")
    caplog.set_level(logging.INFO)
    # Expiring or deleting API keys would end the run's own key: those two go last, on their own.
    own = "^(expireApiKey|deleteApiKey)$"
    await _schemathesis(api, tmp_path, examples, "--exclude-operation-id-regex", own)
    await _schemathesis(api, tmp_path, examples, "--include-operation-id-regex", own)
    tracebacks = [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
    assert not tracebacks, [r.getMessage() for r in tracebacks]


async def test_unexpected_exception_is_a_json_500_with_the_traceback_only_in_the_log(server, caplog):
    from app.server.web import create_app

    app = create_app(server)

    async def boom():
        raise RuntimeError("secret internals")

    app.add_url_rule("/api/v1/boom", "boom", boom)
    app.add_url_rule("/boom", "boom_page", boom)
    caplog.set_level(logging.ERROR)
    client = app.test_client()
    resp = await client.get("/api/v1/boom", headers={"Authorization": "Bearer x"})
    assert resp.status_code == 500
    body = await resp.get_json()
    assert body["code"] == 13 and "secret" not in body["message"] and body["details"] == []
    assert any(r.exc_info and "secret internals" in str(r.exc_info[1]) for r in caplog.records)
    resp = await client.get("/boom")
    assert resp.status_code == 500 and b"secret" not in await resp.get_data()


async def test_document_and_page_are_served_from_the_package(server):
    api = Api(server)   # no key: the document and the page are public, as in headscale
    for path in ("/api/v1/openapi.json", "/swagger/v1/openapiv2.json"):
        status, doc = await api.call("GET", path)
        assert status == 200 and doc == DOC
    status, hdrs, page = await api.raw("GET", "/swagger")
    assert status == 200 and hdrs["content-type"].startswith("text/html")
    assert "script-src 'self'" in hdrs["content-security-policy"] and "unsafe-inline" not in hdrs[
        "content-security-policy"]
    srcs = re.findall(rb'(?:src|href)="([^"]+)"', page)
    assert srcs and all(s.startswith(b"/") for s in srcs)           # nothing from elsewhere
    for s in srcs:
        status, _, body = await api.raw("GET", s.decode())
        assert status == 200 and body
    assert (await api.raw("GET", "/swagger/../web.py"))[0] == 404


async def test_swagger_page_works_in_chromium_under_its_csp(server, tmp_path):
    from tests.browser import async_chromium, async_screenshot

    api = await api_with_key(server)
    await server.state.create_user("shown-in-browser")
    async with async_chromium(tmp_path / "browser") as page:
        problems = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        await page.goto(f"{api.base}/swagger")
        await page.wait_for_selector("details#listUsers")
        await page.fill("#apikey", api.key)
        await page.click("details#listUsers summary")
        await page.click("details#listUsers button")
        out = page.locator("details#listUsers pre[aria-live]")
        await out.filter(has_text="shown-in-browser").wait_for(timeout=10_000)
        assert (await out.inner_text()).startswith("200")
        await async_screenshot(page, "swagger-send")
        assert not problems, problems      # no CSP violation, no script error
