"""The control protocol end to end, in process: register, map stream, deltas, errors."""

from __future__ import annotations

import json
from datetime import UTC

from tests.server.conftest import Stream, new_client, user_and_key


async def registered(services, key, hostname="node"):
    c = await new_client(services)
    resp = await c.register(key, hostinfo={"Hostname": hostname})
    assert resp.get("MachineAuthorized") is True, resp
    return c


async def test_key_endpoint_and_register_and_first_map(server):
    _, key = await user_and_key(server)
    c = await registered(server, key, "laptop")
    s = Stream(c, Hostinfo={"Hostname": "laptop"}, Endpoints=["192.0.2.1:41641"])
    first = await s.wait(lambda m: "Node" in m)
    node = first["Node"]
    assert node["MachineAuthorized"] is True
    assert node["Name"] == "laptop.tailnet.internal."
    assert node["Addresses"][0].startswith("100.64.") and node["Addresses"][0].endswith("/32")
    assert node["Key"] == c.node_key and node["Machine"] == c.machine_key
    assert first["PacketFilters"]["base"][0]["SrcIPs"] == ["*"]
    assert "Regions" in first["DERPMap"]
    assert first["DNSConfig"]["Proxied"] is True
    assert first["Debug"] == {"DisableLogTail": True}
    assert first["ControlTime"].endswith("Z")
    assert first["UserProfiles"][0]["LoginName"] == "alice"
    assert server.state.nodes[node["ID"]].id in server.state.online
    await s.close()
    await c.close()


async def test_peer_deltas_reach_the_other_node(server):
    _, key = await user_and_key(server)
    a = await registered(server, key, "a")
    sa = Stream(a, Hostinfo={"Hostname": "a"})
    await sa.wait(lambda m: "Node" in m)
    b = await registered(server, key, "b")
    sb = Stream(b, Hostinfo={"Hostname": "b"}, Endpoints=["192.0.2.2:1"])
    fb = await sb.wait(lambda m: "Node" in m)
    assert [p["Name"] for p in fb["Peers"]] == ["a.tailnet.internal."]
    bid = fb["Node"]["ID"]
    # a learns about b as a new peer
    m = await sa.wait(lambda m: any(p["ID"] == bid for p in m.get("PeersChanged", [])))
    assert m["PeersChanged"][0]["Name"] == "b.tailnet.internal."
    # b's endpoint change reaches a as a patch
    assert await b.lite_update(Endpoints=["198.51.100.7:41641"]) == 200
    m = await sa.wait(lambda m: any(p.get("NodeID") == bid for p in m.get("PeersChangedPatch", [])))
    patch = next(p for p in m["PeersChangedPatch"] if p["NodeID"] == bid)
    assert patch["Endpoints"] == ["198.51.100.7:41641"]
    # rename reaches a without reconnecting
    await server.state.rename_node(bid, "renamed")
    m = await sa.wait(lambda m: any(p["ID"] == bid and p["Name"].startswith("renamed.")
                                    for p in m.get("PeersChanged", [])))
    # delete reaches a as PeersRemoved
    await server.state.delete_node(bid)
    await sa.wait(lambda m: bid in m.get("PeersRemoved", []))
    for s in (sa, sb):
        await s.close()
    for c in (a, b):
        await c.close()


async def test_offline_online_changes(server):
    _, key = await user_and_key(server)
    a = await registered(server, key, "a")
    sa = Stream(a)
    await sa.wait(lambda m: "Node" in m)
    b = await registered(server, key, "b")
    sb = Stream(b)
    fb = await sb.wait(lambda m: "Node" in m)
    bid = fb["Node"]["ID"]
    await sa.wait(lambda m: any(p["ID"] == bid and p.get("Online") for p in m.get("PeersChanged", []))
                  or m.get("OnlineChange", {}).get(str(bid)) is True)
    await sb.close()
    await sa.wait(lambda m: m.get("OnlineChange", {}).get(str(bid)) is False)
    assert bid not in server.state.online
    await sa.close()


async def test_single_use_key_cannot_register_twice(server):
    _, key = await user_and_key(server, reusable=False)
    await registered(server, key, "one")
    c = await new_client(server)
    resp = await c.register(key, hostinfo={"Hostname": "two"})
    assert resp["Error"] == "authkey already used"
    assert len(server.state.nodes) == 1


async def test_invalid_key_and_expired_key(server):
    c = await new_client(server)
    resp = await c.register("hskey-auth-nope-nope", hostinfo={"Hostname": "x"})
    assert resp["Error"] == "invalid pre auth key"
    from datetime import datetime

    _, key = await user_and_key(server, expiration=datetime(2001, 1, 1, tzinfo=UTC))
    resp = await c.register(key, hostinfo={"Hostname": "x"})
    assert resp["Error"] == "authkey expired"
    assert server.state.nodes == {}


async def test_node_key_from_another_machine_is_refused(server):
    _, key = await user_and_key(server)
    a = await registered(server, key, "a")
    thief = await new_client(server, node_private=a.node_private)
    resp = await thief.register(None)
    assert resp["Error"] == "node exists with a different machine key"
    status, _ = await thief.request("POST", "/machine/map", thief.map_request(Stream=False, OmitPeers=False))
    assert status == 404


async def test_restart_path_and_logout(server):
    _, key = await user_and_key(server)
    a = await registered(server, key, "a")
    again = await a.register(None)          # daemon restart: no auth, same node key
    assert again["MachineAuthorized"] is True and not again.get("Error")
    out = await a.register(None, Expiry="1970-01-01T00:02:03Z")
    assert out["MachineAuthorized"] is True
    node = next(iter(server.state.nodes.values()))
    assert node.expiry is not None
    again = await a.register(None)
    assert again["NodeKeyExpired"] is True


async def test_ephemeral_node_deleted_on_logout(server):
    _, key = await user_and_key(server, ephemeral=True)
    a = await registered(server, key, "eph")
    assert len(server.state.nodes) == 1
    out = await a.register(None, Expiry="1970-01-01T00:02:03Z")
    assert out["NodeKeyExpired"] is True
    assert server.state.nodes == {}


async def test_bad_requests_are_refused_without_harm(server):
    _, key = await user_and_key(server)
    a = await registered(server, key, "a")
    for body in (b"not json", b"[1,2]"):
        _sid, st = await a._start("POST", "/machine/map", body)
        assert st.status == 400
    status, _ = await a.request("POST", "/machine/map", {"Version": "x", "NodeKey": a.node_key})
    assert status == 400
    status, _ = await a.request("POST", "/machine/map", {"Version": 130, "NodeKey": "nodekey:zz"})
    assert status == 400
    status, _ = await a.request("POST", "/machine/map", {"Version": 50, "NodeKey": a.node_key})
    assert status == 400
    status, body = await a.request("POST", "/machine/register", {"NodeKey": 5})
    assert status == 200 and json.loads(body)["Error"]
    status, _ = await a.request("POST", "/machine/whoami", {})
    assert status == 501
    # The connection still works afterwards.
    assert await a.lite_update(Endpoints=["192.0.2.9:1"]) == 200
