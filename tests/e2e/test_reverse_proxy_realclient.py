"""Behind nginx with headscale's documented recipe: real clients join through it, DERP is relayed
through it, and trusted_proxies decides whose X-Forwarded-For is believed.

TLS ends at nginx (https://10.200.0.1:8443); our server listens on plain HTTP :8080 and trusts
only 127.0.0.1 (nginx) as a proxy. A client that talks to the server directly with a forged
X-Forwarded-For is logged under its own address.
"""

from __future__ import annotations

import sys

from tests.e2e.certs import make_ca_and_cert
from tests.e2e.harness import (
    ROOT,
    SERVER_IP,
    Netns,
    Server,
    TsnetNode,
    fetch,
    tempdir,
    two_node_caddyfile,
    wait_for,
)
from tests.nginx import Nginx

# Runs inside the namespace: a TS2021-over-WebSocket session with a forged X-Forwarded-For,
# then a garbage frame, so the server logs the address it believes ("closing WebSocket of ...").
PROBE = """
import asyncio, base64, ssl, sys
from urllib.parse import urlencode
from app.client.control import fetch_key
from app.client.wsclient import open_websocket
from app.core import keys
from app.core.noise import Initiator

async def main(host, port, cafile, forged):
    tls = ssl.create_default_context(cafile=cafile) if cafile else None
    pub = await fetch_key(host, port, tls=tls)
    init = Initiator(keys.new_private(), pub, 130, keys.new_private())
    hs = base64.b64encode(init.initiation()).decode()
    r, w = await open_websocket(host, port, "/ts2021?" + urlencode({"X-Tailscale-Handshake": hs}),
                                "tailscale-control-protocol", tls, extra_headers=[("X-Forwarded-For", forged)])
    init.finish(await r.readexactly(51))
    w.write_raw(b"\\x83\\x03abc")
    await w.drain()
    while await asyncio.wait_for(r.read(), 10):
        pass
    print("closed", r.close_code)

asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]))
"""


def test_clients_join_and_relay_through_nginx_and_forged_forwarding_is_ignored():
    with tempdir() as work, Netns() as ns:
        ca, cert, key = make_ca_and_cert(work / "pki", SERVER_IP)
        proxy = Nginx(work, listen=f"{SERVER_IP}:8443", name=SERVER_IP, upstream="127.0.0.1:8080",
                      cert=cert, key=key, popen=lambda args, log: ns.popen(args, log=log))
        srv = Server(ns, work / "srv", scheme="https", port=8443, listen_addr="0.0.0.0:8080",
                     trusted_proxies=["127.0.0.1/32"])
        node = TsnetNode(ns, work, "pair")
        proxy.start()
        try:
            srv.start()
            key_ = srv.create_key("alice", "--reusable")
            node.run_caddyfile(two_node_caddyfile(srv.url, key_, node.state), SSL_CERT_FILE=str(ca),
                               TS_DEBUG_ALWAYS_USE_DERP="1")
            wait_for(lambda: "hello from nodea" in fetch(ns, 18081), 90, what="B -> A over the tailnet")
            assert len(srv.nodes()) == 2
            derp = srv.debug("derp")
            assert derp["clients_connected"] == 2 and derp["packets_relayed"] > 0

            env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
            via_proxy = ns.run([sys.executable, "-c", PROBE, SERVER_IP, "8443", str(ca), "6.6.6.6"], env=env)
            direct = ns.run([sys.executable, "-c", PROBE, SERVER_IP, "8080", "", "7.7.7.7"], env=env)
            assert "closed 1002" in via_proxy.stdout and "closed 1002" in direct.stdout
            log = srv.log_text()
            closes = [line for line in log.splitlines() if "closing WebSocket of" in line]
            assert len(closes) == 2, closes
            assert all(f"closing WebSocket of {SERVER_IP}:" in line for line in closes), closes
            assert "6.6.6.6" not in log and "7.7.7.7" not in log and "of 127.0.0.1" not in log
            # nginx logs an upgraded request when it ends: control and DERP went through it.
            node.stop()
            wait_for(lambda: all(x in proxy.access_log() for x in ('"POST /ts2021 HTTP/1.1" 101',
                                                                   '"GET /derp HTTP/1.1" 101')), 20,
                     what="upgrades in nginx's access log")
        finally:
            node.stop()
            srv.stop()
            proxy.stop()
