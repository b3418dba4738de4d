"""Administrators sign in to the web console with OIDC (console.oidc_admins), against the real
provider in Chromium; everyone else is refused and gets no session."""

from __future__ import annotations

from tests.browser import async_screenshot
from tests.oidc_idp import async_sign_in


async def test_listed_admin_signs_in_and_others_are_refused(make_server, browser):
    services = await make_server(**{"console.oidc_admins": ["alice@example.com", "group:ops"]})
    host, port = services.addresses["listen"]
    base = f"http://{host}:{port}/admin"

    # Not an administrator: refused, no session, no tailnet user.
    await browser.goto(base + "/login")
    await browser.click("#oidc-signin")
    await async_sign_in(browser, "mallory")
    await browser.wait_for_selector("h1:has-text('console')")
    assert "console.oidc_admins" in await browser.inner_text("main")
    await browser.goto(base + "/machines")
    assert browser.url.endswith("/admin/login")

    # The listed administrator: straight into the console.
    await browser.context.clear_cookies()
    await browser.goto(base + "/login")
    await browser.click("#oidc-signin")
    await async_sign_in(browser, "alice")
    await browser.wait_for_url("**/admin/machines", timeout=15_000)
    assert "alice@example.com" in await browser.inner_text("header")
    await async_screenshot(browser, "console-oidc-signed-in")
    # A console sign-in creates no tailnet user, and the session works for changes (CSRF form).
    assert services.state.user_by_name("alice") is None
    await browser.goto(base + "/users")
    await browser.fill("#u-name", "made-by-alice")
    await browser.click("button:has-text('Create user')")
    await browser.wait_for_selector("text=user made-by-alice created")
    assert services.state.user_by_name("made-by-alice") is not None


async def test_without_admins_the_console_offers_no_oidc(make_server, browser):
    services = await make_server()
    host, port = services.addresses["listen"]
    await browser.goto(f"http://{host}:{port}/admin/login")
    assert await browser.locator("#oidc-signin").count() == 0
    resp = await browser.goto(f"http://{host}:{port}/admin/oidc")
    assert resp.status == 404
