"""Sign-in with a real provider and a real browser: the waiting machine is registered after the
person confirms; every failure is a page and changes nothing."""

from __future__ import annotations

import asyncio
import logging
import time
from urllib.parse import parse_qsl, urlsplit

from tests.browser import async_screenshot
from tests.oidc.conftest import new_client
from tests.oidc_idp import CLIENT_SECRET, async_sign_in


async def _confirm_page(page, url: str, login: str) -> None:
    await page.goto(url)
    await async_sign_in(page, login)
    await page.wait_for_selector("h1:has-text('Confirm machine registration')", timeout=15000)


async def test_sign_in_registers_the_waiting_machine(make_server, browser, trust_idp, caplog):
    caplog.set_level(logging.DEBUG)
    services = await make_server({"allowed_domains": ["example.com"], "allowed_groups": ["/staff"],
                                  "pkce": {"enabled": True, "method": "S256"}})
    client, url = await new_client(services, "laptop")
    seen: list[str] = []
    browser.on("request", lambda r: seen.append(r.url))
    followup = asyncio.create_task(client.register(Followup=url))
    t0 = time.monotonic()
    await _confirm_page(browser, url, "alice")
    text = await browser.inner_text("main")
    assert "laptop" in text and "Alice Example (alice@example.com)" in text and "linux" in text
    await async_screenshot(browser, "oidc-confirm")
    assert not followup.done()          # nothing is registered before the click
    assert not services.state.nodes
    await browser.click("button[type=submit]")
    await browser.wait_for_selector("h1:has-text('Machine registered')")
    await async_screenshot(browser, "oidc-success")
    resp = await asyncio.wait_for(followup, 10)
    elapsed = time.monotonic() - t0
    assert resp["MachineAuthorized"] is True, resp
    (node,) = services.state.nodes.values()
    user = services.state.users[node.user_id]
    assert (user.name, user.email, user.display_name) == ("alice", "alice@example.com", "Alice Example")
    assert user.provider == "oidc" and user.provider_identifier == f"{trust_idp.issuer}/alice"
    assert user.profile_pic_url == "https://example.com/alice.png"
    assert node.register_method == "oidc" and node.hostname == "laptop"
    assert resp["Login"]["LoginName"] == "alice@example.com"
    print(f"login URL -> registered (browser sign-in + confirm): {elapsed:.2f} s")
    # Nothing secret reached the log: not the code, state, nonce, PKCE challenge, login id or secret.
    redirect = next(u for u in seen if u.startswith(trust_idp.issuer + "/auth?"))
    callback = next(u for u in seen if "/oidc/callback?" in u)
    values = dict(parse_qsl(urlsplit(redirect).query)) | dict(parse_qsl(urlsplit(callback).query))
    secrets = [values[k] for k in ("state", "nonce", "code_challenge", "code")] + [CLIENT_SECRET]
    secrets.append(url.rsplit("/", 1)[-1][len("hskey-authreq-"):])     # the login link's id
    text = "\n".join(r.getMessage() + str(getattr(r, "http", "")) for r in caplog.records)
    assert "node 1 registered for user" in text
    leaks = [ln for ln in text.splitlines() if any(v in ln for v in secrets)]
    assert leaks == [], leaks
    await client.close()


async def test_disallowed_domain_gets_a_page_and_no_node(make_server, browser, caplog):
    services = await make_server({"allowed_domains": ["example.com"]})
    client, url = await new_client(services, "intruder")
    await browser.goto(url)
    await async_sign_in(browser, "mallory")
    await browser.wait_for_selector("h1:has-text('not allowed')")
    assert "domain" in await browser.inner_text("main")
    await async_screenshot(browser, "oidc-denied-domain")
    assert len([r for r in caplog.records if "sign-in failed" in r.getMessage()]) == 1   # logged once
    assert not services.state.nodes and services.state.user_by_name("mallory") is None
    # The machine still waits: an admin can still decide.
    assert any(not p.done.is_set() for p in services.registrar.pending.values())
    await client.close()


async def test_unverified_email_and_group_rules(make_server, browser):
    services = await make_server({"allowed_users": ["bob@example.com"]})
    client, url = await new_client(services)
    await browser.goto(url)
    await async_sign_in(browser, "bob")          # email_verified: false, required by default
    await browser.wait_for_selector("h1:has-text('not verified')")
    assert services.state.user_by_name("bob") is None
    await client.close()


async def test_cancel_at_the_provider_and_replay_and_foreign_browser(make_server, browser, tmp_path, trust_idp):
    from tests.browser import async_chromium

    services = await make_server()
    client, url = await new_client(services)
    await browser.goto(url)
    await browser.wait_for_selector("input[name=login]")
    await browser.click("text=Cancel")            # the provider answers error=access_denied
    await browser.wait_for_selector("h1:has-text('Sign-in was cancelled')")
    assert "HTTP 403" in await browser.inner_text("main")
    # A full sign-in, then the same callback URL again: a replay.
    seen: list[str] = []
    browser.on("request", lambda r: seen.append(r.url))
    await _confirm_page(browser, url, "alice")
    callback = next(u for u in reversed(seen) if "/oidc/callback?code=" in u)
    await browser.goto(callback)
    await browser.wait_for_selector("h1:has-text('already used')")
    # The callback in another browser (no state cookie): refused, nothing registered.
    async with async_chromium(tmp_path / "other", ca_pems=[trust_idp.ca]) as other:
        await other.goto(callback)
        await other.wait_for_selector("h1:has-text('could not be verified')")
    assert not services.state.nodes
    await client.close()


async def test_unknown_and_malformed_ids(make_server, browser):
    services = await make_server()
    host, port = services.addresses["listen"]
    resp = await browser.goto(f"http://{host}:{port}/register/hskey-authreq-000000000000000000000000")
    assert resp.status in (400, 404)
    await browser.wait_for_selector("h1")
    resp = await browser.goto(f"http://{host}:{port}/register/%3Cscript%3E")
    assert resp.status == 400
    assert "<script>" not in await browser.content()


async def test_admin_approves_or_rejects_a_pending_web_login(make_server, browser):
    from tests.server.apiclient import api_with_key

    services = await make_server({"use_expiry_from_token": True})
    api = await api_with_key(services)
    client, url = await new_client(services, "approved-by-admin")
    auth_id = url.rsplit("/", 1)[-1]
    # Nobody signed in yet: approve says how to register it instead, and changes nothing.
    status, body = await api.call("POST", "/api/v1/auth/approve", {"authId": auth_id})
    assert status == 400 and "headscale auth register --auth-id" in body["message"], body
    followup = asyncio.create_task(client.register(Followup=url))
    await _confirm_page(browser, url, "alice")
    await api.ok("POST", "/api/v1/auth/approve", {"authId": auth_id})     # `headscale auth approve`
    resp = await asyncio.wait_for(followup, 10)
    assert resp["MachineAuthorized"] is True
    (node,) = services.state.nodes.values()
    # use_expiry_from_token: the node expires with the ID token (the provider issues them for 1 h).
    left = (node.expiry - services.state.now()).total_seconds()
    assert 3000 < left <= 3600, left
    # The person's own confirmation now finds nothing to confirm.
    await browser.click("button[type=submit]")
    await browser.wait_for_selector("h1:has-text('expired')")
    # Reject: the waiting client is told, nothing is registered.
    client2, url2 = await new_client(services, "rejected")
    followup2 = asyncio.create_task(client2.register(Followup=url2))
    await asyncio.sleep(0.1)
    await api.ok("POST", "/api/v1/auth/reject", {"authId": url2.rsplit("/", 1)[-1]})
    resp2 = await asyncio.wait_for(followup2, 10)
    assert "rejected" in resp2.get("Error", ""), resp2
    assert len(services.state.nodes) == 1
    status, _ = await api.call("POST", "/api/v1/auth/reject", {"authId": url2.rsplit("/", 1)[-1]})
    assert status == 404
    await client.close()
    await client2.close()


async def test_default_node_expiry_applies_to_oidc_nodes(make_server, browser):
    services = await make_server(**{"node.expiry": "180d"})
    local = await services.state.create_user("alice")      # a local user of the same name stays apart
    client, url = await new_client(services)
    followup = asyncio.create_task(client.register(Followup=url))
    await _confirm_page(browser, url, "alice")
    await browser.click("button[type=submit]")
    await asyncio.wait_for(followup, 10)
    (node,) = services.state.nodes.values()
    days = (node.expiry - services.state.now()).total_seconds() / 86400
    assert 179.9 < days <= 180, days
    assert node.user_id != local.id and services.state.users[node.user_id].name == "alice"
    assert services.state.users[node.user_id].provider == "oidc" and not local.provider_identifier
    await client.close()


async def test_ssh_check_is_approved_by_the_source_machines_owner_only(make_server, browser):
    services = await make_server()
    client, url = await new_client(services, "src")
    followup = asyncio.create_task(client.register(Followup=url))
    await _confirm_page(browser, url, "alice")
    await browser.click("button[type=submit]")
    await asyncio.wait_for(followup, 10)
    (src,) = services.state.nodes.values()
    checks = services.ssh_checks
    host, port = services.addresses["listen"]
    # Someone else signs in at the check link: refused, the check stays pending.
    first = checks._delegate(src.id, src.id, "root")["message"].split("visit: ")[1].strip()
    await browser.context.clear_cookies()
    await browser.goto(first)
    await async_sign_in(browser, "mallory")
    await browser.wait_for_selector("h1:has-text('owner')")
    first_id = first.rsplit("/", 1)[-1]
    assert first_id in checks.pending and not checks.pending[first_id].decided.is_set()
    # The owner signs in: approved.
    second = checks._delegate(src.id, src.id, "root")["message"].split("visit: ")[1].strip()
    assert second.startswith(f"http://{host}:{port}/auth/")
    await browser.context.clear_cookies()
    await browser.goto(second)
    await async_sign_in(browser, "alice")
    await browser.wait_for_selector("h1:has-text('SSH session authorized')")
    req = checks.pending[second.rsplit("/", 1)[-1]]
    assert req.decided.is_set() and req.approved
    await client.close()


async def test_provider_down_during_the_code_exchange(make_server, browser, trust_idp):
    import dataclasses

    from tests.oidc_idp import free_port

    services = await make_server()
    client, url = await new_client(services)
    # The provider's token endpoint stops answering between the redirect and the code exchange.
    provider = services.oidc.provider
    dead = f"https://127.0.0.1:{free_port()}/token"
    provider.endpoints = dataclasses.replace(provider.endpoints, token_endpoint=dead)
    await browser.goto(url)
    await async_sign_in(browser, "alice")
    await browser.wait_for_selector("h1:has-text('unavailable')")
    await async_screenshot(browser, "oidc-provider-down")
    assert "HTTP 502" in await browser.inner_text("main")
    assert not services.state.nodes and services.state.user_by_name("alice") is None
    await client.close()


async def test_log_out_then_sign_in_again_keeps_the_node(make_server, browser):
    from app.client.control import ControlClient
    from app.core.tailcfg import go_time

    services = await make_server()
    client, url = await new_client(services, "roamer")
    followup = asyncio.create_task(client.register(Followup=url))
    await _confirm_page(browser, url, "alice")
    await browser.click("button[type=submit]")
    await asyncio.wait_for(followup, 10)
    (node,) = services.state.nodes.values()
    # `tailscale logout`: the node key expires now.
    out = await client.register(Expiry=go_time(services.state.now()))
    assert out["NodeKeyExpired"] is True and services.state.nodes[node.id].is_expired(services.state.now())
    await client.close()
    # `tailscale up` again: same machine, a new node key (OldNodeKey names the expired one).
    host, port = services.addresses["listen"]
    again = ControlClient(host, port, machine_private=client.machine_private)
    await again.connect()
    resp = await again.register(OldNodeKey=client.node_key, hostinfo={"Hostname": "roamer", "OS": "linux"})
    url2 = resp["AuthURL"]
    followup2 = asyncio.create_task(again.register(Followup=url2, OldNodeKey=client.node_key))
    await browser.goto(url2)             # the provider still knows the browser: no login form
    await browser.wait_for_selector("h1:has-text('Confirm machine registration')")
    await browser.click("button[type=submit]")
    await browser.wait_for_selector("h1:has-text('Machine re-authenticated')")
    assert (await asyncio.wait_for(followup2, 10))["MachineAuthorized"] is True
    (renewed,) = services.state.nodes.values()
    assert renewed.id == node.id and (renewed.ipv4, renewed.ipv6) == (node.ipv4, node.ipv6)
    assert renewed.node_key == again.node_key and not renewed.is_expired(services.state.now())
    await again.close()
