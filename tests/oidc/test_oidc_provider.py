"""The provider's availability at start-up (only_start_if_oidc_is_available both ways) and key
rotation (an unknown kid makes the server refetch the JWKS once)."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
from pathlib import Path

import yaml

from app.server.serve import build, start, stop
from tests.browser import async_chromium, async_screenshot
from tests.oidc.conftest import new_client, running, server_config
from tests.oidc_idp import IdP, async_sign_in, free_port, rsa_jwks

HEADSCALE = str(Path(sys.executable).parent / "headscale")


async def _get(port: int, path: str) -> tuple[int, str, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    raw = (await reader.read()).decode(errors="replace")
    writer.close()
    head, _, body = raw.partition("\r\n\r\n")
    location = next((ln.split(":", 1)[1].strip() for ln in head.splitlines() if ln.lower().startswith("location:")), "")
    return int(head.split()[1]), location, body


def test_unavailable_provider_stops_start_up_with_one_line(tmp_path):
    port, dead = free_port(), free_port()
    cfg = {"server_url": f"http://127.0.0.1:{port}", "listen_addr": f"127.0.0.1:{port}", "metrics_listen_addr": "",
           "noise": {"private_key_path": str(tmp_path / "noise.key")},
           "database": {"type": "sqlite", "sqlite": {"path": str(tmp_path / "db.sqlite")}},
           "unix_socket": str(tmp_path / "hs.sock"), "dns": {"magic_dns": False, "base_domain": "tailnet.test", "override_local_dns": False},
           "derp": {"urls": [], "server": {"enabled": False}},
           "oidc": {"issuer": f"https://127.0.0.1:{dead}", "client_id": "headscale", "client_secret": "s3cret-value"}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    t0 = time.monotonic()
    r = subprocess.run([HEADSCALE, "serve", "-c", str(path)], capture_output=True, text=True, timeout=60,
                       check=False)
    assert r.returncode != 0
    lines = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert len(errors) == 1 and f"OIDC provider https://127.0.0.1:{dead} is not available" in errors[0], lines
    assert "only_start_if_oidc_is_available: false" in errors[0]
    assert "Traceback" not in r.stderr and "s3cret-value" not in r.stdout + r.stderr
    assert time.monotonic() - t0 < 30


async def test_start_without_provider_then_sign_in_once_it_answers(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="headscale.oidc")
    port = free_port()
    idp = IdP(tmp_path / "idp", redirect_uri=f"http://127.0.0.1:{port}/oidc/callback")
    monkeypatch.setenv("SSL_CERT_FILE", str(idp.ca))
    cfg = server_config(tmp_path, port, idp.oidc_config(only_start_if_oidc_is_available=False))
    async with running(cfg) as services:
        assert not services.oidc.provider.available
        pending = services.registrar.add_debug_pending("hskey-authreq-" + "ab" * 12, "waiting", [])
        status, _, body = await _get(port, f"/register/{pending.auth_id}")
        assert status == 503 and "Sign-in is unavailable" in body
        idp.start()
        try:
            deadline = time.monotonic() + 15
            while not services.oidc.provider.available and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            assert services.oidc.provider.available, "discovery was not retried"
            status, location, _ = await _get(port, f"/register/{pending.auth_id}")
            assert status == 302 and location.startswith(idp.issuer + "/auth?")
            assert "code_challenge" not in location      # PKCE off by default, as headscale
        finally:
            idp.stop()
    assert any("still unavailable" in r.getMessage() or "not available" in r.getMessage() for r in caplog.records)
    assert any("is available; sign-in works now" in r.getMessage() for r in caplog.records)


async def test_rotated_signing_key_is_fetched_once(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="headscale.oidc")
    port = free_port()
    idp = IdP(tmp_path / "idp", redirect_uri=f"http://127.0.0.1:{port}/oidc/callback", jwks=rsa_jwks(),
              pkce_required=True)
    monkeypatch.setenv("SSL_CERT_FILE", str(idp.ca))
    idp.start()
    try:
        cfg = server_config(tmp_path, port, idp.oidc_config(pkce={"enabled": True, "method": "S256"}))
        services = await build(cfg)
        await start(services)
        try:
            old = {k.kid for k in services.oidc.provider.keys.keys}
            # The provider rotates its key (same issuer and TLS certificate).
            idp.stop()
            idp.config["jwks"] = rsa_jwks()
            idp.start()
            client, url = await new_client(services, "rotated")
            followup = asyncio.create_task(client.register(Followup=url))
            async with async_chromium(tmp_path / "browser", ca_pems=[idp.ca]) as page:
                await page.goto(url)
                await async_sign_in(page, "alice")
                await page.wait_for_selector("h1:has-text('Confirm machine registration')")
                await page.click("button[type=submit]")
                await page.wait_for_selector("h1:has-text('Machine registered')")
                await async_screenshot(page, "oidc-after-key-rotation")
            assert (await asyncio.wait_for(followup, 10))["MachineAuthorized"] is True
            new = {k.kid for k in services.oidc.provider.keys.keys}
            assert new and not (new & old)
            refetches = [r for r in caplog.records if "refetching the provider's JWKS" in r.getMessage()]
            assert len(refetches) == 1
            await client.close()
        finally:
            await stop(services)
    finally:
        idp.stop()
