"""Real Tailscale clients under short idle timeouts (issue 11): a node's map long-poll is a
request in progress, so its Noise connection is never closed as idle, and the tailnet keeps
working while strangers' silent connections are closed."""

from __future__ import annotations

import time

import pytest

from tests.e2e.harness import (
    Netns,
    Server,
    TsnetNode,
    fetch,
    proxy_site,
    tempdir,
    two_node_caddyfile,
    wait_for,
)

DERP_HTTP = {"TS_DEBUG_USE_DERP_HTTP": "1"}
IDLE = 2


def online(srv) -> dict[str, dict]:
    return {n["givenName"]: n for n in srv.nodes() if n["online"]}


@pytest.mark.realclient
def test_connected_nodes_outlive_many_idle_timeouts():
    with tempdir() as work, Netns() as ns:
        srv = Server(ns, work / "srv", tuning={"batch_change_delay": "50ms",
                                               "noise_idle_timeout": f"{IDLE}s",
                                               "http_idle_timeout": f"{IDLE}s",
                                               "request_head_timeout": f"{IDLE}s"},
                     log={"level": "debug"})
        srv.start()
        key = srv.create_key("alice", "--reusable")
        node = TsnetNode(ns, work, "idle")
        sites = proxy_site(18082, "http://still-here.tailnet.test:80")
        node.run_caddyfile(two_node_caddyfile(srv.url, key, node.state, extra_sites=sites), **DERP_HTTP)
        try:
            nodes = wait_for(lambda: len(online(srv)) == 2 and online(srv), 60, what="two online nodes")
            ida = int(nodes["nodea"]["id"])
            assert wait_for(lambda: "hello from nodea" in fetch(ns, 18081), 60, what="B -> A")
            registrations = srv.log_text().count("registered with pre-auth key")
            idle_closes = srv.log_text().count("closing idle noise connection")

            time.sleep(5 * IDLE)

            assert len(online(srv)) == 2
            assert srv.log_text().count("closing idle noise connection") == idle_closes
            assert srv.log_text().count("registered with pre-auth key") == registrations
            # Changes still reach the nodes over their long-polls: B resolves A's new name.
            srv.cli("nodes", "rename", "-i", str(ida), "still-here")
            assert wait_for(lambda: "hello from nodea" in fetch(ns, 18082), 30, what="B -> renamed A")
            # Meanwhile a silent stranger is let go after the head timeout.
            srv_ip = srv.url.split("//", 1)[1].rsplit(":", 1)[0]
            probe = (f"import socket,time;s=socket.create_connection(({srv_ip!r},{srv.port}));t=time.time();"
                     "s.settimeout(30);d=s.recv(1);print(round(time.time()-t,1), len(d))")
            r = ns.run(["python3", "-c", probe], check=False, timeout=40)
            waited, got = r.stdout.split()
            assert got == "0" and float(waited) < IDLE + 3, r.stdout + r.stderr
        finally:
            node.stop()
            srv.stop()
