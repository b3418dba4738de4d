"""Access control with real clients: alice may reach tag:server:80, bob may not even see it,
until `headscale policy set` lets him in (no restart, no reconnect)."""

from __future__ import annotations

import json
import time

from tests.e2e.harness import Netns, Server, TsnetNode, fetch, proxy_site, tempdir, wait_for

DERP_HTTP = {"TS_DEBUG_USE_DERP_HTTP": "1"}


def policy(*sources: str) -> str:
    return json.dumps({
        "tagOwners": {"tag:server": ["alice@"]},
        "acls": [{"action": "accept", "src": list(sources), "dst": ["tag:server:80"]}],
    })


def caddyfile(url: str, state, keys: dict[str, str]) -> str:
    nodes = "".join(
        f"\t\t{name} {{\n\t\t\thostname {name}\n\t\t\tauth_key {key}\n\t\t}}\n" for name, key in keys.items()
    )
    sites = "".join(f":80 {{\n\tbind tailscale/{name}\n\trespond \"hello from {name}\"\n}}\n" for name in keys)
    return (
        "{\n\tadmin off\n\tauto_https off\n\ttailscale {\n"
        f"\t\tcontrol_url {url}\n\t\tstate_dir {state}\n{nodes}\t}}\n}}\n" + sites
        + proxy_site(18081, "http://websrv:80", via="alicenode")
        + proxy_site(18082, "http://websrv:80", via="bobnode")
    )


def test_policy_controls_reachability_and_updates_live():
    with tempdir() as work, Netns() as ns:
        srv = Server(ns, work / "srv")
        srv.start()
        node = TsnetNode(ns, work, "acl")
        try:
            pol = work / "policy.json"
            pol.write_text(policy("alice@"))
            srv.cli_json("users", "create", "alice")
            srv.cli_json("users", "create", "bob")
            srv.cli("policy", "set", "-f", str(pol))
            keys = {
                "websrv": srv.create_key("alice", "--tags", "tag:server"),
                "alicenode": srv.create_key("alice"),
                "bobnode": srv.create_key("bob"),
            }
            node.run_caddyfile(caddyfile(srv.url, node.state, keys), **DERP_HTTP)
            wait_for(lambda: sum(n["online"] for n in srv.nodes()) == 3, 60, what="three nodes online")
            ids = {n["givenName"]: int(n["id"]) for n in srv.nodes()}
            assert [n["tags"] for n in srv.nodes() if n["givenName"] == "websrv"] == [["tag:server"]]

            wait_for(lambda: "hello from websrv" in fetch(ns, 18081), 60, what="alice reaches the server")
            sessions = srv.debug("sessions")
            assert ids["websrv"] not in sessions[str(ids["bobnode"])]["peers"]
            assert ids["websrv"] in sessions[str(ids["alicenode"])]["peers"]
            assert "hello from websrv" not in fetch(ns, 18082)
            serials = {k: v["serial"] for k, v in sessions.items()}

            pol.write_text(policy("alice@", "bob@"))
            t0 = time.time()
            srv.cli("policy", "set", "-f", str(pol))
            wait_for(lambda: "hello from websrv" in fetch(ns, 18082), 15, interval=0.25, what="bob reaches the server")
            took = time.time() - t0
            assert took < 15
            assert {k: v["serial"] for k, v in srv.debug("sessions").items()} == serials   # no reconnect
            assert "bob@" in srv.cli("policy", "get").stdout
        finally:
            node.stop()
            srv.stop()
