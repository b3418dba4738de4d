"""Embedded DERP with real clients: TLS on the main listener, traffic relayed through us.

The server serves https:// with a throwaway CA that the clients trust through SSL_CERT_FILE;
the DERP map holds only our embedded region.
"""

from __future__ import annotations

import pytest

from tests.e2e.certs import make_ca_and_cert
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


def tls_server(ns, work, name="srv", port=8443, **overrides) -> tuple[Server, str]:
    ca, cert, key = make_ca_and_cert(work / "pki", SERVER_IP)
    srv = Server(ns, work / name, scheme="https", port=port, tls_cert_path=str(cert), tls_key_path=str(key),
                 **overrides)
    return srv, str(ca)


@pytest.mark.parametrize("always_derp", [True, False], ids=["always-derp", "client-choice"])
def test_traffic_between_nodes_through_embedded_derp(always_derp):
    with tempdir() as work, Netns() as ns:
        srv, ca = tls_server(ns, work)
        srv.start()
        node = TsnetNode(ns, work, "pair")
        env = {"SSL_CERT_FILE": ca}
        if always_derp:
            env["TS_DEBUG_ALWAYS_USE_DERP"] = "1"
        try:
            derp = srv.debug("derp")
            assert derp["clients_connected"] == 0
            key = srv.create_key("alice", "--reusable")
            node.run_caddyfile(two_node_caddyfile(srv.url, key, node.state), **env)
            wait_for(lambda: "hello from nodea" in fetch(ns, 18081), 90, what="B -> A over the tailnet")
            derp = srv.debug("derp")
            assert derp["clients_connected"] == 2          # both nodes hold a home DERP connection
            if not always_derp:
                # The clients STUN our server (TS_DEBUG_ALWAYS_USE_DERP turns UDP off, hence not there).
                # tests/vectors/stun/real_client_binding_request.hex was captured here: a Binding
                # Request with SOFTWARE "tailnode" and a FINGERPRINT.
                derp = wait_for(lambda: (d := srv.debug("derp"))["stun_responses"] > 0 and d, 30, what="STUN")
                req = bytes.fromhex(derp["stun_last_request"])
                assert req[:2] == b"\x00\x01" and b"tailnode" in req and len(req) == 40
            if always_derp:
                assert derp["packets_relayed"] > 0
                assert derp["bytes_relayed"] > 0
        finally:
            node.stop()
            srv.stop()


def test_node_of_another_tailnet_is_refused_by_verify_clients():
    with tempdir() as work, Netns() as ns:
        ours, ca = tls_server(ns, work, "ours")
        ours.start()
        # A second tailnet whose DERP map points at our relay (as region 900).
        derp_map = work / "derp.yaml"
        derp_map.write_text(
            "regions:\n  900:\n    regionid: 900\n    regioncode: theirs\n    regionname: Borrowed\n"
            f"    nodes:\n      - name: 900a\n        regionid: 900\n        hostname: {SERVER_IP}\n"
            "        derpport: 8443\n        stunport: -1\n"
        )
        theirs = Server(ns, work / "theirs", port=9080, metrics_listen_addr="127.0.0.1:9091",
                        derp={"server": {"enabled": False}, "paths": [str(derp_map)]})
        theirs.start()
        node = TsnetNode(ns, work, "stranger")
        try:
            key = theirs.create_key("mallory")
            node.run_caddyfile(
                "{\n\tadmin off\n\tauto_https off\n\ttailscale {\n"
                f"\t\tcontrol_url {theirs.url}\n\t\tauth_key {key}\n\t\tstate_dir {node.state}\n\t}}\n}}\n"
                ":80 {\n\tbind tailscale/stranger\n\trespond \"hi\"\n}\n",
                SSL_CERT_FILE=ca,
            )
            wait_for(lambda: any(n["online"] for n in theirs.nodes()), 60, what="stranger online at its server")
            wait_for(lambda: ours.debug("derp").get("clients_refused", 0) > 0, 60, what="refusal at our DERP")
            assert ours.debug("derp")["clients_connected"] == 0
        finally:
            node.stop()
            theirs.stop()
            ours.stop()
