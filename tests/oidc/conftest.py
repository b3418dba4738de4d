"""OIDC sign-in against a real provider (npm oidc-provider over HTTPS with a test CA), our
server in-process on loopback, and Debian Chromium driven by Playwright (async API)."""

from __future__ import annotations

import contextlib

import pytest

from app.client.control import ControlClient
from app.config import dev_config
from app.server.serve import build, start, stop
from tests.browser import async_chromium
from tests.oidc_idp import IdP, free_port


@pytest.fixture
def port():
    return free_port()


@pytest.fixture
def idp(tmp_path, port):
    p = IdP(tmp_path / "idp", redirect_uri=f"http://127.0.0.1:{port}/oidc/callback")
    p.start()
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture
def trust_idp(idp, monkeypatch):
    # The server trusts the private provider like any private CA: SSL_CERT_FILE.
    monkeypatch.setenv("SSL_CERT_FILE", str(idp.ca))
    return idp


def server_config(tmp_path, port, oidc: dict | None, **extra):
    overrides = {"listen_addr": f"127.0.0.1:{port}", "server_url": f"http://127.0.0.1:{port}",
                 "metrics_listen_addr": "", "tuning.batch_change_delay": "20ms"}
    if oidc is not None:
        overrides["oidc"] = oidc
    overrides.update(extra)
    return dev_config(str(tmp_path / "srv"), overrides=overrides)


@contextlib.asynccontextmanager
async def running(cfg):
    services = await build(cfg)
    await start(services)
    try:
        yield services
    finally:
        await stop(services)


@pytest.fixture
async def make_server(tmp_path, port, trust_idp):
    """make_server(**oidc_overrides) -> services of a started server signing in with the IdP."""
    stack = contextlib.AsyncExitStack()

    async def make(oidc: dict | None = None, **extra):
        cfg = server_config(tmp_path, port, trust_idp.oidc_config(**(oidc or {})), **extra)
        return await stack.enter_async_context(running(cfg))

    async with stack:
        yield make


@pytest.fixture
async def browser(tmp_path, trust_idp):
    async with async_chromium(tmp_path / "browser", ca_pems=[trust_idp.ca]) as page:
        yield page


async def new_client(services, hostname: str = "laptop") -> tuple[ControlClient, str]:
    """A machine without a key: (client, its login URL)."""
    host, port = services.addresses["listen"]
    client = ControlClient(host, port)
    await client.connect()
    resp = await client.register(hostinfo={"Hostname": hostname, "OS": "linux"})
    assert resp.get("AuthURL", "").startswith(f"http://{host}:{port}/register/"), resp
    return client, resp["AuthURL"]
