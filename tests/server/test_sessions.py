"""Map-session lifecycle: keepalives, replacement, interactive registration, key rotation,
ephemeral collection, DERP map deltas."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

from app.service.sessions import MapSession
from tests.server.conftest import Stream, new_client, user_and_key


def test_keepalive_interval_is_50_to_59_seconds():
    random.seed(7)
    s = MapSession(1, 130)
    values = [s.next_keepalive() for _ in range(500)]
    assert min(values) >= 50 and max(values) <= 59


async def test_keepalives_flow_when_idle(server):
    _, key = await user_and_key(server)
    c = await new_client(server)
    await c.register(key, hostinfo={"Hostname": "k"})
    # Shorten the interval for this server's sessions (the protocol allows any interval < 120 s).
    server.ts2021.routes_for.__self__.keepalive = (0.05, 0.1)
    s = Stream(c)
    await s.wait(lambda m: "Node" in m)
    await s.wait(lambda m: m == {"KeepAlive": True}, timeout=3)
    n = sum(1 for m in s.messages if m == {"KeepAlive": True})
    await asyncio.sleep(0.5)
    assert sum(1 for m in s.messages if m == {"KeepAlive": True}) > n
    await s.close()


async def test_new_stream_replaces_the_old_one(server):
    _, key = await user_and_key(server)
    c = await new_client(server)
    await c.register(key, hostinfo={"Hostname": "r"})
    s1 = Stream(c)
    f1 = await s1.wait(lambda m: "Node" in m)
    nid = f1["Node"]["ID"]
    first = server.batcher.sessions[nid]
    s2 = Stream(c)
    await s2.wait(lambda m: "Node" in m)
    assert server.batcher.sessions[nid] is not first
    await asyncio.wait_for(s1.task, 5)        # the old stream was ended by the server
    assert nid in server.state.online          # and the node stayed online throughout
    await s2.close()


async def test_interactive_registration_with_auth_register(server):
    user = await server.state.create_user("carol")
    c = await new_client(server)
    resp = await c.register(None, hostinfo={"Hostname": "web"})
    url = resp["AuthURL"]
    assert url.startswith("http://127.0.0.1:8080/register/hskey-authreq-")
    auth_id = url.rsplit("/", 1)[1]
    follow = asyncio.create_task(c.register(None, hostinfo={"Hostname": "web"}, Followup=url))
    await asyncio.sleep(0.1)
    assert not follow.done()
    node = await server.registrar.complete(auth_id, user)
    done = await asyncio.wait_for(follow, 5)
    assert done["MachineAuthorized"] is True and done["Login"]["LoginName"] == "carol"
    assert server.state.nodes[node.id].user_id == user.id


async def test_node_key_rotation_keeps_the_node(server):
    _, key = await user_and_key(server)
    c = await new_client(server)
    await c.register(key, hostinfo={"Hostname": "rot"})
    (nid,) = server.state.nodes
    old_key = c.node_key
    from app.core import keys

    c.node_private = keys.new_private()
    resp = await c.register(None, OldNodeKey=old_key)
    assert resp["MachineAuthorized"] is True
    assert list(server.state.nodes) == [nid]
    assert server.state.nodes[nid].node_key == c.node_key
    assert server.state.node_by_key(old_key) is None


async def test_ephemeral_nodes_collected_after_inactivity(server):
    _, key = await user_and_key(server, ephemeral=True)
    c = await new_client(server)
    await c.register(key, hostinfo={"Hostname": "e"})
    (nid,) = server.state.nodes
    clock = [datetime.now(UTC)]
    server.state.now = lambda: clock[0]
    server.state.set_online(nid, True)
    assert await server.state.collect_ephemeral(120) == []          # online: kept
    server.state.set_online(nid, False)                             # last_seen = now
    clock[0] += timedelta(seconds=60)
    assert await server.state.collect_ephemeral(120) == []          # offline 60 s: kept
    clock[0] += timedelta(seconds=61)
    assert await server.state.collect_ephemeral(120) == [nid]       # offline 121 s: deleted
    assert server.state.nodes == {}
    assert await server.state.db.list_nodes() == []


async def test_derp_map_change_reaches_nodes_as_a_delta(server):
    _, key = await user_and_key(server)
    c = await new_client(server)
    await c.register(key, hostinfo={"Hostname": "d"})
    s = Stream(c)
    await s.wait(lambda m: "Node" in m)
    mark = s.mark()
    new_map = {"Regions": {"901": {"RegionID": 901, "RegionCode": "x", "RegionName": "X",
                                    "Nodes": [{"Name": "901a", "RegionID": 901, "HostName": "derp.example"}]}}}
    server.state.set_derp_map(new_map)
    m = await s.wait(lambda m: "DERPMap" in m, after=mark)
    assert m["DERPMap"] == new_map and "Node" not in m and "PeersChanged" not in m
    await s.close()


async def test_expired_node_is_told_and_peers_see_it(server):
    _, key = await user_and_key(server)
    a = await new_client(server)
    await a.register(key, hostinfo={"Hostname": "a"})
    b = await new_client(server)
    await b.register(key, hostinfo={"Hostname": "b"})
    sa = Stream(a)
    fa = await sa.wait(lambda m: "Node" in m)
    ida = fa["Node"]["ID"]
    idb = next(i for i in server.state.nodes if i != ida)
    mark = sa.mark()
    await server.state.expire_node(idb)
    # (b's own join may still reach a as a PeersChanged first: wait for the expired entry)
    m = await sa.wait(lambda m: any(p["ID"] == idb and p.get("Expired") for p in m.get("PeersChanged", [])),
                      after=mark)
    peer = next(p for p in m["PeersChanged"] if p["ID"] == idb)
    assert peer["Expired"] is True and peer["KeyExpiry"] != "0001-01-01T00:00:00Z"
    resp = await b.register(None)
    assert resp["NodeKeyExpired"] is True
    await sa.close()
