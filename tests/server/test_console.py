"""The web console over plain HTTP: sign-in, CSRF, escaping, headers, and that each page's
change goes through the same service calls as the API (tests/browser_console for Chromium)."""

from __future__ import annotations

import asyncio
import http.client
import re
from datetime import timedelta
from urllib.parse import urlencode

import pytest

from app.config import dev_config
from app.core.authid import new_auth_id
from app.server.console.session import Sessions
from app.server.serve import build, start, stop


class Browser:
    """Cookies, no automatic redirects, form posts: what the console sees from a browser."""

    def __init__(self, services) -> None:
        self.host, self.port = services.addresses["listen"]
        self.cookies: dict[str, str] = {}

    def _req(self, method, path, form, headers):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=20)
        h = {"Host": f"{self.host}:{self.port}", **(headers or {})}
        if self.cookies:
            h["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urlencode(form, doseq=True)
            h["Content-Type"] = "application/x-www-form-urlencoded"
        conn.request(method, path, body=body, headers=h)
        r = conn.getresponse()
        data = r.read().decode("utf-8", "replace")
        hdrs = {k.lower(): v for k, v in r.getheaders()}
        for raw in r.headers.get_all("Set-Cookie") or []:
            name, _, rest = raw.partition("=")
            value = rest.split(";", 1)[0]
            if "max-age=0" in raw.lower() or "expires=thu, 01 jan 1970" in raw.lower():
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        conn.close()
        return r.status, hdrs, data

    async def get(self, path, headers=None):
        return await asyncio.to_thread(self._req, "GET", path, None, headers)

    async def post(self, path, form, headers=None):
        return await asyncio.to_thread(self._req, "POST", path, form, headers)

    async def csrf(self, path="/admin/machines") -> str:
        _, _, page = await self.get(path)
        return re.search(r'name="csrf" value="([^"]+)"', page)[1]


async def signed_in(server) -> Browser:
    _, key = await server.state.create_api_key(server.state.now() + timedelta(days=1))
    b = Browser(server)
    status, hdrs, _ = await b.post("/admin/login", {"api_key": key})
    assert status == 303 and hdrs["location"].endswith("/admin/machines")
    b.key = key
    return b


async def test_off_unless_enabled(tmp_path):
    cfg = dev_config(str(tmp_path), overrides={"listen_addr": "127.0.0.1:0", "metrics_listen_addr": "",
                                               "console.enabled": False})
    services = await build(cfg)
    await start(services)
    try:
        status, _, _ = await Browser(services).get("/admin/login")
        assert status == 404
    finally:
        await stop(services)


async def test_sign_in_cookie_and_wrong_key(server):
    b = Browser(server)
    status, hdrs, _ = await b.get("/admin/machines")
    assert status == 303 and hdrs["location"].endswith("/admin/login")
    status, hdrs, page = await b.get("/admin/login")
    assert status == 200 and "API key" in page
    csp = hdrs["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe" not in csp and "frame-ancestors 'none'" in csp
    status, _, page = await b.post("/admin/login", {"api_key": "hskey-api-nothere-" + "x" * 40})
    assert status == 401 and "not valid" in page and not b.cookies
    status, _, page = await b.post("/admin/login", {"api_key": "<script>"})
    assert status == 401 and "<script>" not in page
    b = await signed_in(server)
    status, hdrs, page = await b.get("/admin/machines")
    assert status == 200 and "Machines" in page and hdrs["cache-control"] == "no-store"
    status, _, _ = await b.post("/admin/login", {"api_key": "x"}, headers={"Origin": "http://evil.example"})
    assert status == 403


async def test_cookie_flags(server):
    _, key = await server.state.create_api_key(None)
    b = Browser(server)
    raw = await asyncio.to_thread(_raw_login, b, key)
    low = raw.lower()
    assert "httponly" in low and "samesite=strict" in low and "path=/" in low
    assert Sessions(secure=True).cookie_args("v")["secure"] is True
    assert Sessions(secure=True).cookie == "__Host-hs_console"


def _raw_login(b: Browser, key: str) -> str:
    conn = http.client.HTTPConnection(b.host, b.port, timeout=20)
    conn.request("POST", "/admin/login", body=urlencode({"api_key": key}),
                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    r = conn.getresponse()
    r.read()
    return r.headers["Set-Cookie"]


async def test_csrf_and_origin_are_required(server):
    st = server.state
    user = await st.create_user("alice")
    _, full = await st.create_preauth_key(user.id, reusable=False, ephemeral=False, expiration=None, tags=[])
    from tests.server.conftest import new_client

    c = await new_client(server)
    await c.register(full, hostinfo={"Hostname": "box"})
    nid = next(iter(st.nodes))
    b = await signed_in(server)
    status, _, _ = await b.post(f"/admin/machines/{nid}/rename", {"name": "evil"})
    assert status == 403 and st.nodes[nid].given_name == "box"
    token = await b.csrf()
    status, _, _ = await b.post(f"/admin/machines/{nid}/rename", {"name": "evil", "csrf": token + "x"})
    assert status == 403 and st.nodes[nid].given_name == "box"
    status, _, _ = await b.post(f"/admin/machines/{nid}/rename", {"name": "evil", "csrf": token},
                                headers={"Origin": "https://evil.example"})
    assert status == 403 and st.nodes[nid].given_name == "box"
    status, hdrs, _ = await b.post(f"/admin/machines/{nid}/rename", {"name": "good", "csrf": token},
                                   headers={"Origin": f"http://{b.host}:{b.port}"})
    assert status == 303 and st.nodes[nid].given_name == "good"
    status, _, page = await b.get(hdrs["location"])
    assert "renamed to good" in page
    # a bad name changes nothing and says why
    await b.post(f"/admin/machines/{nid}/rename", {"name": "Not A Label", "csrf": token})
    assert st.nodes[nid].given_name == "good"
    assert "not a valid DNS label" in (await b.get(f"/admin/machines/{nid}"))[2]
    await c.close()


async def test_output_is_escaped(server):
    await server.state.create_user("bob", display_name='<img src=x onerror="alert(1)">')
    b = await signed_in(server)
    _, _, page = await b.get("/admin/users")
    assert "<img src=x" not in page and "&lt;img src=x onerror=" in page


async def test_session_ends_with_its_api_key(server):
    b = await signed_in(server)
    assert (await b.get("/admin/users"))[0] == 200
    k = await server.state.db.validate_api_key(b.key)
    await server.state.db.expire_api_key(k.id)
    status, hdrs, _ = await b.get("/admin/users")
    assert status == 303 and hdrs["location"].endswith("/admin/login")
    assert (await b.get("/admin/machines/state.json"))[0] == 401


async def test_users_keys_and_qr(server):
    st = server.state
    b = await signed_in(server)
    token = await b.csrf("/admin/users")
    await b.post("/admin/users", {"name": "carol", "email": "carol@example.com", "csrf": token})
    carol = st.user_by_name("carol")
    assert carol is not None and carol.email == "carol@example.com"
    status, _, page = await b.post("/admin/keys", {"user": str(carol.id), "hours": "2", "reusable": "on",
                                                   "csrf": token})
    assert status == 200
    full = re.search(r'id="full-key" class="mono" value="(hskey-auth-[^"]+)"', page)[1]
    assert f"tailscale up --login-server {server.cfg.server_url} --authkey {full}" in page
    assert re.search(r"<svg [^>]*class=\"qr\"", page) and "<title>QR code" in page
    key = (await st.list_preauth_keys())[0]
    assert key.reusable and key.user_id == carol.id
    await b.post(f"/admin/keys/{key.id}/expire", {"csrf": token})
    assert (await st.list_preauth_keys())[0].is_expired(st.now())
    status, _, page = await b.post("/admin/keys", {"user": "", "tags": "", "hours": "2", "csrf": token})
    assert status == 303 and len(await st.list_preauth_keys()) == 1
    _, _, page = await b.get("/admin/keys")
    assert "needs a user or at least one tag" in page
    await b.post(f"/admin/users/{carol.id}/rename", {"name": "caroline", "csrf": token})
    assert st.users[carol.id].name == "caroline"
    await b.post(f"/admin/users/{carol.id}/delete", {"csrf": token})
    assert carol.id not in st.users


async def test_policy_check_diff_and_save(server):
    b = await signed_in(server)
    token = await b.csrf("/admin/policy")
    failing = '{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:22"]}], ' \
              '"tests": [{"src": "nobody@", "accept": ["*:80"]}]}'
    status, _, page = await b.post("/admin/policy/save", {"policy": failing, "csrf": token})
    assert status == 400 and "Not saved" in page and await server.policy.get() is None
    good = '{\n  // web only\n  "acls": [{"action": "accept", "src": ["*"], "dst": ["*:80"]}],\n}\n'
    status, _, page = await b.post("/admin/policy/check", {"policy": good, "csrf": token})
    assert status == 200 and "valid and its tests pass" in page and await server.policy.get() is None
    assert '<span class="add">+  // web only</span>' in page
    status, _, _ = await b.post("/admin/policy/save", {"policy": good, "csrf": token})
    assert status == 303 and (await server.policy.get())[0] == good
    newer = good.replace("*:80", "*:443")
    _, _, page = await b.post("/admin/policy/check", {"policy": newer, "csrf": token})
    assert '<span class="del">-  &#34;acls&#34;' in page or '<span class="del">-  &quot;acls&quot;' in page


async def test_pending_web_login_and_ssh_check(server):
    st = server.state
    await st.create_user("dave")
    auth_id = new_auth_id()
    server.registrar.add_debug_pending(auth_id, "webbox", [])
    b = await signed_in(server)
    _, _, page = await b.get("/admin/pending")
    assert auth_id in page and "webbox" in page
    token = await b.csrf("/admin/pending")
    dave = st.user_by_name("dave")
    await b.post(f"/admin/pending/login/{auth_id}/approve", {"user": str(dave.id), "csrf": token})
    assert [n.given_name for n in st.nodes.values() if n.user_id == dave.id] == ["webbox"]
    other = new_auth_id()
    server.registrar.add_debug_pending(other, "unwanted", [])
    await b.post(f"/admin/pending/login/{other}/reject", {"csrf": token})
    page = (await b.get("/admin/pending"))[2]
    assert "login rejected" in page and other not in page
    assert not any(n.given_name == "unwanted" for n in st.nodes.values())
    status, _hdrs, _ = await b.post(f"/admin/pending/ssh/{new_auth_id()}/approve", {"csrf": token})
    assert status == 303
    assert "no pending SSH check" in (await b.get("/admin/pending"))[2]


async def test_overview_and_live_state(server):
    b = await signed_in(server)
    status, _, page = await b.get("/admin/overview")
    assert status == 200 and "headscale_nodes" in page and "DERP" in page
    status, hdrs, body = await b.get("/admin/machines/state.json")
    assert status == 200 and hdrs["content-type"].startswith("application/json") and '"nodes"' in body


@pytest.mark.parametrize("asset", ["console.css", "console.js"])
async def test_assets_come_from_the_package(server, asset):
    status, _hdrs, body = await Browser(server).get(f"/admin/static/{asset}")
    assert status == 200 and body


async def test_machine_tags_routes_expire_delete(server):
    from tests.server.conftest import new_client

    st = server.state
    user = await st.create_user("erin")
    _, full = await st.create_preauth_key(user.id, reusable=False, ephemeral=False, expiration=None, tags=[])
    await st.load_policy('{"tagOwners": {"tag:srv": ["erin@"]}, "acls": [{"action": "accept", "src": ["*"], '
                         '"dst": ["*:*"]}]}')
    c = await new_client(server)
    await c.register(full, hostinfo={"Hostname": "gw<b>x</b>", "RoutableIPs": ["10.7.0.0/24", "0.0.0.0/0", "::/0"]})
    nid = next(iter(st.nodes))
    b = await signed_in(server)
    _, _, page = await b.get(f"/admin/machines/{nid}")
    assert "gw<b>" not in page and "10.7.0.0/24" in page and "Exit node" in page
    token = await b.csrf(f"/admin/machines/{nid}")
    await b.post(f"/admin/machines/{nid}/routes", {"route": ["10.7.0.0/24"], "exit": "on", "csrf": token})
    assert set(st.nodes[nid].approved_routes) == {"10.7.0.0/24", "0.0.0.0/0", "::/0"}
    await b.post(f"/admin/machines/{nid}/routes", {"route": ["10.7.0.0/24"], "csrf": token})
    assert set(st.nodes[nid].approved_routes) == {"10.7.0.0/24"}
    await b.post(f"/admin/machines/{nid}/tags", {"tags": "tag:srv, notatag", "csrf": token})
    assert st.nodes[nid].tags == ()                          # one bad tag: nothing changes
    await b.post(f"/admin/machines/{nid}/tags", {"tags": "tag:bad!", "csrf": token})
    assert st.nodes[nid].tags == ()                          # headscale's tag-name rule, said on the page
    assert "a valid tag is" in (await b.get(f"/admin/machines/{nid}"))[2]
    await b.post(f"/admin/machines/{nid}/tags", {"tags": "tag:srv", "csrf": token})
    assert st.nodes[nid].tags == ("tag:srv",)
    _, _, page = await b.get("/admin/machines")
    assert "tag:srv" in page
    await b.post(f"/admin/machines/{nid}/expire", {"csrf": token})
    assert st.nodes[nid].is_expired(st.now())
    await b.post(f"/admin/machines/{nid}/delete", {"csrf": token})
    assert nid not in st.nodes
    status, hdrs, _ = await b.get(f"/admin/machines/{nid}")
    assert status == 303 and "does not exist" in (await b.get(hdrs["location"]))[2]
    await c.close()
