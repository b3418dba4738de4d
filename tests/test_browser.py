"""The browser harness itself: Debian Chromium under Playwright trusts exactly the test CA it is given."""

from __future__ import annotations

import http.server
import ssl
import threading

from tests.browser import async_chromium, chromium, screenshot
from tests.e2e.certs import make_ca_and_cert


def _https_server(tmp_path):
    ca, cert, key = make_ca_and_cert(tmp_path / "tls", "127.0.0.1")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"<!doctype html><title>hello</title><h1>Hello from a test CA</h1>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, ca, f"https://127.0.0.1:{srv.server_address[1]}/"


def test_chromium_trusts_the_given_ca_only(tmp_path):
    srv, ca, url = _https_server(tmp_path)
    try:
        with chromium(tmp_path / "trusting", ca_pems=[ca]) as page:
            page.goto(url)
            assert page.locator("h1").inner_text() == "Hello from a test CA"
            assert screenshot(page, "browser-harness").stat().st_size > 1000
        with chromium(tmp_path / "untrusting") as page:
            try:
                page.goto(url)
                raise AssertionError("an unknown CA was accepted")
            except Exception as e:  # noqa: BLE001 - Playwright's Error; the message names the reason
                assert "ERR_CERT_AUTHORITY_INVALID" in str(e)
    finally:
        srv.shutdown()


async def test_async_variant_works_inside_an_event_loop(tmp_path):
    srv, ca, url = _https_server(tmp_path)
    try:
        async with async_chromium(tmp_path / "b", ca_pems=[ca]) as page:
            await page.goto(url)
            assert await page.title() == "hello"
    finally:
        srv.shutdown()


def test_nothing_leaves_the_machine(tmp_path):
    from tests.browser import is_local

    assert is_local("http://127.0.0.1:8080/x") and is_local("https://10.200.0.1:9443/auth")
    assert not is_local("https://fonts.googleapis.com/css") and not is_local("http://192.0.2.1/")
    with chromium(tmp_path / "b") as page:
        failed: list[str] = []
        page.on("requestfailed", lambda r: failed.append(r.url))
        page.set_content('<link rel="stylesheet" href="https://fonts.googleapis.com/css?family=Roboto">'
                         '<img src="http://192.0.2.1/x.png">')
        page.wait_for_timeout(300)
        assert sorted(failed) == ["http://192.0.2.1/x.png", "https://fonts.googleapis.com/css?family=Roboto"]
