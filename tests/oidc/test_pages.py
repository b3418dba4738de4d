"""The pages a person sees render in Chromium (screenshots under tests/.artifacts), are valid HTML
(html5lib, strict), load nothing from elsewhere, run no script under their CSP, and escape
hostile machine and user names."""

from __future__ import annotations

import asyncio
import plistlib
import re

import html5lib

from tests.browser import async_chromium, async_screenshot
from tests.oidc.conftest import new_client, running, server_config
from tests.oidc_idp import async_sign_in, free_port

HOSTILE = "<script>alert(1)</script>\"'&x"


def assert_valid_html(text: str) -> None:
    parser = html5lib.HTMLParser(strict=True)
    parser.parse(text)      # raises on any parse error
    # Nothing loaded from another origin: every src/href is a local path.
    for ref in re.findall(r'(?:src|href|action)="([^"]*)"', text):
        assert ref.startswith("/"), ref


class PageWatch:
    """Collects what would be bad on a page: dialogs (a script ran), CSP reports, failed loads."""

    def __init__(self, page) -> None:
        self.problems: list[str] = []
        page.on("dialog", lambda d: self.problems.append(f"dialog: {d.message}"))
        page.on("console", lambda m: self.problems.append(f"console: {m.text}") if m.type == "error" else None)
        page.on("requestfailed", lambda r: self.problems.append(f"failed: {r.url}"))


async def _visit(page, url: str, name: str, watch: PageWatch, status: int = 200) -> str:
    resp = await page.goto(url)
    assert resp.status == status, (url, resp.status)
    headers = await resp.all_headers()
    assert "default-src 'none'" in headers["content-security-policy"]
    assert "script-src" not in headers["content-security-policy"]       # no script at all
    html = await resp.text()
    assert_valid_html(html)
    await async_screenshot(page, name)
    # The stylesheet applied (its hash is in the CSP): the heading is not the browser default.
    color = await page.eval_on_selector("h1", "e => getComputedStyle(e).fontFamily")
    assert "system-ui" in color
    return html


async def test_pages_without_oidc(tmp_path):
    port = free_port()
    async with running(server_config(tmp_path, port, None)) as services:
        base = f"http://127.0.0.1:{port}"
        client, url = await new_client(services, HOSTILE)
        auth_id = url.rsplit("/", 1)[-1]
        async with async_chromium(tmp_path / "b") as page:
            watch = PageWatch(page)
            html = await _visit(page, base + "/", "page-index", watch)
            assert f"tailscale up --login-server {base}" in html
            html = await _visit(page, url, "page-register-no-oidc", watch)
            assert f"headscale auth register --auth-id {auth_id} --user USERNAME" in html
            assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
            assert await page.inner_text("pre") == f"headscale auth register --auth-id {auth_id} --user USERNAME"
            await _visit(page, f"{base}/auth/{auth_id}", "page-ssh-check", watch)
            html = await _visit(page, base + "/apple", "page-apple", watch)
            assert "/apple/macos-app-store" in html
            await _visit(page, base + "/windows", "page-windows", watch)
            await _visit(page, base + "/register/not-an-id", "page-error-invalid", watch, status=400)
            # Narrow screen (a phone): nothing wider than the viewport.
            await page.set_viewport_size({"width": 360, "height": 740})
            await page.goto(url)
            width = await page.evaluate("document.documentElement.scrollWidth")
            assert width <= 360, width
            await async_screenshot(page, "page-register-phone")
            favicon = await page.request.get(base + "/favicon.ico")
            assert favicon.status == 200 and (await favicon.body()).startswith(b"\x89PNG")
            assert favicon.headers["content-type"] == "image/png"
            # (the 400 of the invalid-id page is the only resource that failed, on purpose)
            assert [p for p in watch.problems if "status of 400" not in p] == [], watch.problems
        await client.close()


async def test_apple_profiles(tmp_path):
    port = free_port()
    async with running(server_config(tmp_path, port, None)):
        for platform, payload in (("ios", "io.tailscale.ipn.ios"), ("macos-app-store", "io.tailscale.ipn.macos"),
                                  ("macos-standalone", "io.tailscale.ipn.macsys")):
            body = await _raw_get(port, f"/apple/{platform}")
            head, _, xml = body.partition(b"\r\n\r\n")
            assert b"application/x-apple-aspen-config" in head
            prof = plistlib.loads(xml)
            (content,) = prof["PayloadContent"]
            assert content["PayloadType"] == payload and content["ControlURL"] == f"http://127.0.0.1:{port}"
        assert b" 400 " in (await _raw_get(port, "/apple/windows")).split(b"\r\n", 1)[0]

    # A server_url with characters that XML must escape still gives a well-formed profile.
    from app.server.pages.assets import mobileconfig

    prof = plistlib.loads(mobileconfig("ios", "https://a.example/?x=<y>&z").encode())
    assert prof["PayloadContent"][0]["ControlURL"] == "https://a.example/?x=<y>&z"


async def _raw_get(port: int, path: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    return data


async def test_sign_in_pages_escape_hostile_names(make_server, browser):
    services = await make_server()
    client, url = await new_client(services, HOSTILE)
    watch = PageWatch(browser)
    followup = asyncio.create_task(client.register(Followup=url))
    await browser.goto(url)
    await async_sign_in(browser, "eve")           # name: "<img src=x onerror=alert(1)> Eve & \"Co\""
    await browser.wait_for_selector("h1:has-text('Confirm machine registration')")
    html = await browser.content()
    assert_valid_html(html)
    assert "<img" not in html and "<script>alert" not in html
    assert "&lt;img src=x onerror=alert(1)&gt; Eve" in html and "&lt;script&gt;alert(1)" in html
    await async_screenshot(browser, "page-confirm-hostile")
    await browser.click("button[type=submit]")
    await browser.wait_for_selector("h1:has-text('Machine registered')")
    html = await browser.content()
    assert_valid_html(html)
    assert "<img" not in html
    await async_screenshot(browser, "page-success-hostile")
    assert (await asyncio.wait_for(followup, 10))["MachineAuthorized"] is True
    # The invalid preferred_username was not used: the verified e-mail names the user.
    (node,) = services.state.nodes.values()
    assert services.state.users[node.user_id].name == "eve@example.com"
    assert [p for p in watch.problems if "dialog" in p] == []
    await client.close()


def test_templates_and_stylesheet_ship_in_the_package():
    """The image installs the project as a wheel: package-data must name every page file."""
    import fnmatch
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["*"]
    pages = root / "app" / "server" / "pages"
    files = [p.relative_to(pages).as_posix() for p in pages.rglob("*") if p.is_file() and p.suffix != ".pyc"
             and p.suffix != ".py"]
    assert files and all(any(fnmatch.fnmatch(f, pat) and f.count("/") == pat.count("/") for pat in patterns)
                         for f in files), files
