"""Debian's pebble (Let's Encrypt's RFC 8555 test CA) with real validation, for the ACME tests.

pebble's directory is served over TLS with a throw-away CA (tests/e2e/certs.py) that the server
under test trusts through SSL_CERT_FILE; pebble-challtestsrv is pebble's DNS and answers every
A query with ``ip`` (where the server under test listens). Validation is real: pebble connects
to ``http_port`` (HTTP-01) or ``tls_port`` (TLS-ALPN-01) at that address.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

from tests.e2e.certs import make_ca_and_cert


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Pebble:
    def __init__(self, work: Path, *, ip: str = "127.0.0.1", http_port: int, tls_port: int,
                 popen=None, run=None) -> None:
        self.dir = work / "pebble"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ip = ip
        self.port, self.mgmt, self.dns = free_port(), free_port(), free_port()
        self.dns_mgmt = free_port()
        self.ca, cert, key = make_ca_and_cert(self.dir / "pki", ip)
        cfg = {"pebble": {"listenAddress": f"{ip}:{self.port}", "managementListenAddress": f"{ip}:{self.mgmt}",
                          "certificate": str(cert), "privateKey": str(key), "httpPort": http_port,
                          "tlsPort": tls_port, "ocspResponderURL": "", "externalAccountBindingRequired": False}}
        self.config = self.dir / "pebble.json"
        self.config.write_text(json.dumps(cfg))
        self.log = self.dir / "pebble.log"
        self.popen = popen or (lambda args, env, log: subprocess.Popen(
            args, env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True))  # noqa: SIM115
        self.run = run
        self.procs: list[subprocess.Popen] = []

    @property
    def directory(self) -> str:
        return f"https://{self.ip}:{self.port}/dir"

    def start(self) -> None:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PEBBLE_VA_NOSLEEP": "1",
               "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_AUTHZREUSE": "0"}
        self.procs.append(self.popen(
            ["pebble-challtestsrv", "-defaultIPv4", self.ip, "-defaultIPv6", "", "-dns01", f"{self.ip}:{self.dns}",
             "-http01", "", "-https01", "", "-tlsalpn01", "", "-management", f"{self.ip}:{self.dns_mgmt}"],
            env, self.dir / "challtestsrv.log"))
        self.procs.append(self.popen(["pebble", "-config", str(self.config), "-dnsserver", f"{self.ip}:{self.dns}"],
                                     env, self.log))
        deadline = time.time() + 20
        while time.time() < deadline:
            if "ACME directory available" in self.log_text() or "Listening on" in self.log_text():
                break
            time.sleep(0.1)
        else:
            self.stop()
            raise RuntimeError("pebble did not start:\n" + self.log_text()[-2000:])
        time.sleep(0.2)

    def root_pem(self, path: Path) -> Path:
        """pebble's issuing root (regenerated at each start), from its management port."""
        url = f"https://{self.ip}:{self.mgmt}/roots/0"
        if self.run is not None:
            pem = self.run(["curl", "-s", "--cacert", str(self.ca), url]).stdout
        else:
            ctx = ssl.create_default_context(cafile=str(self.ca))
            with urllib.request.urlopen(url, context=ctx, timeout=10) as r:
                pem = r.read().decode()
        assert "BEGIN CERTIFICATE" in pem, pem
        path.write_text(pem)
        return path

    def log_text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def count(self, needle: str) -> int:
        return self.log_text().count(needle)

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
