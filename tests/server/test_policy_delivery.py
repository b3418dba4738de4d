"""Policy changes reach connected nodes as deltas; unaffected nodes get nothing."""

from __future__ import annotations

import asyncio
import json

import pytest

from app.service.errors import Invalid
from tests.server.conftest import Stream, new_client, user_and_key

ALICE_TO_SERVER = {
    "tagOwners": {"tag:server": ["alice@"]},
    "acls": [{"action": "accept", "src": ["alice@"], "dst": ["tag:server:80"]}],
}
BOTH_TO_SERVER = {
    "tagOwners": {"tag:server": ["alice@"]},
    "acls": [{"action": "accept", "src": ["alice@", "bob@"], "dst": ["tag:server:80"]}],
}


async def join(services, key, hostname):
    c = await new_client(services)
    resp = await c.register(key, hostinfo={"Hostname": hostname})
    assert resp.get("MachineAuthorized"), resp
    s = Stream(c, Hostinfo={"Hostname": hostname})
    first = await s.wait(lambda m: "Node" in m)
    return c, s, first["Node"]["ID"]


@pytest.fixture
async def tailnet(server):
    _, ka = await user_and_key(server, "alice")
    _, kb = await user_and_key(server, "bob")
    _, ks = await user_and_key(server, "alice", tags=["tag:server"])
    a = await join(server, ka, "a")
    b = await join(server, kb, "b")
    s = await join(server, ks, "srv")
    ids = {a[2], b[2], s[2]}
    for c, st, nid in (a, b, s):   # everyone has been told about everyone before the test starts
        await st.wait(lambda m, nid=nid: set(server.batcher.sessions[nid].sent_peers) == ids - {nid}
                      and any(p["ID"] == max(ids - {nid}) for p in m.get("PeersChanged", []) + m.get("Peers", [])))
    yield server, a, b, s
    for c, st, _ in (a, b, s):
        await st.close()
        await c.close()


async def test_policy_set_reaches_only_affected_nodes(tailnet):
    server, (_ca, sa, ida), (_cb, sb, idb), (_cs, ss, ids) = tailnet
    marks = ss.mark(), sb.mark()
    await server.policy.set(json.dumps(ALICE_TO_SERVER))
    # The server node gets a filter that lets alice's address in on port 80.
    m = await ss.wait(lambda m: "PacketFilters" in m, after=marks[0])
    rules = m["PacketFilters"]["base"]
    a_ip = server.state.nodes[ida].ipv4
    assert any(a_ip in r["SrcIPs"] for r in rules)
    assert all(p["Ports"] == {"First": 80, "Last": 80} for r in rules for p in r["DstPorts"])
    # bob loses sight of the server (and of alice); alice keeps the server.
    mb = await sb.wait(lambda m: ids in m.get("PeersRemoved", []), after=marks[1])
    assert "PacketFilters" in mb and mb["PacketFilters"]["base"] == []
    await asyncio.sleep(0.2)
    assert ids in server.batcher.sessions[ida].sent_peers
    assert ids not in server.batcher.sessions[idb].sent_peers

    # Allowing bob: bob sees the server again; alice's view does not change, so she gets nothing.
    before_a, mb, ms = len(sa.messages), sb.mark(), ss.mark()
    await server.policy.set(json.dumps(BOTH_TO_SERVER))
    await sb.wait(lambda m: any(p["ID"] == ids for p in m.get("PeersChanged", [])), after=mb)
    await ss.wait(lambda m: "PacketFilters" in m and any(
        server.state.nodes[idb].ipv4 in r["SrcIPs"] for r in m["PacketFilters"]["base"]), after=ms)
    await asyncio.sleep(0.3)
    assert len(sa.messages) == before_a


async def test_rejected_policy_keeps_the_active_one(tailnet):
    server, *_ = tailnet
    await server.policy.set(json.dumps(ALICE_TO_SERVER))
    active = server.state.policy_source
    for bad in ('{"acls": [', json.dumps({"acls": [{"action": "accept", "src": ["group:nope"], "dst": ["*:*"]}]}),
                json.dumps({**ALICE_TO_SERVER, "tests": [{"src": "alice@", "deny": ["tag:server:80"]}]})):
        with pytest.raises(Invalid):
            await server.policy.set(bad)
        assert server.state.policy_source == active
    stored = await server.state.db.get_policy()
    assert stored[0] == active


async def test_tag_added_to_node_changes_what_others_see(tailnet):
    server, (_ca, _sa, ida), (_cb, sb, _idb), (_cs, ss, ids) = tailnet
    mb0, ms0 = sb.mark(), ss.mark()
    await server.policy.set(json.dumps({
        "tagOwners": {"tag:server": ["alice@"], "tag:web": ["alice@"]},
        "acls": [{"action": "accept", "src": ["bob@"], "dst": ["tag:web:443"]}],
    }))
    await sb.wait(lambda m: ids in m.get("PeersRemoved", []) or ida in m.get("PeersRemoved", []), after=mb0)
    mb1 = sb.mark()
    await server.state.set_tags(ids, ["tag:web"])
    await sb.wait(lambda m: any(p["ID"] == ids for p in m.get("PeersChanged", [])), after=mb1)
    m = await ss.wait(lambda m: "PacketFilters" in m and m["PacketFilters"]["base"], after=ms0)
    assert m["PacketFilters"]["base"][0]["DstPorts"][0]["Ports"] == {"First": 443, "Last": 443}


async def test_file_mode_reload_and_broken_file(tmp_path, server):
    from app.service.policy import PolicyService

    path = tmp_path / "policy.hujson"
    path.write_text("// comment\n" + json.dumps(ALICE_TO_SERVER)[:-1] + ",}\n")   # HuJSON: trailing comma
    svc = PolicyService(server.state, "file", str(path))
    await svc.load()
    assert "alice@" in server.state.policy_source
    path.write_text('{"acls": [ broken')
    assert svc.file_changed()
    assert await svc.reload() is False
    assert "alice@" in server.state.policy_source
    path.write_text(json.dumps(BOTH_TO_SERVER))
    assert await svc.reload() is True
    assert "bob@" in server.state.policy_source
    with pytest.raises(Invalid):
        await svc.set(json.dumps(ALICE_TO_SERVER))


async def test_subnet_routes_follow_the_policy(tailnet):
    """A router's subnet reaches only the viewers the policy lets use it (AllowedIPs per viewer)."""
    server, (_ca, sa, _ida), (_cb, sb, _idb), (cs, _ss, ids) = tailnet
    await cs.lite_update(Hostinfo={"Hostname": "srv", "RoutableIPs": ["10.9.0.0/16"]})
    await server.state.approve_routes(ids, ["10.9.0.0/16"])
    await server.policy.set(json.dumps({
        "tagOwners": {"tag:server": ["alice@"]},
        "acls": [{"action": "accept", "src": ["alice@"], "dst": ["tag:server:*", "10.9.0.0/16:*"]},
                 {"action": "accept", "src": ["bob@"], "dst": ["tag:server:*"]}],
    }))

    async def allowed(stream, after=0):
        m = await stream.wait(lambda m: any(p["ID"] == ids and "10.9.0.0/16" in p["AllowedIPs"]
                                            for p in m.get("PeersChanged", []) + m.get("Peers", [])), after=after)
        return m

    await allowed(sa)
    await asyncio.sleep(0.3)
    last_b = [p for m in sb.messages for p in m.get("PeersChanged", []) + m.get("Peers", []) if p["ID"] == ids][-1]
    assert "10.9.0.0/16" not in last_b["AllowedIPs"]
    mark = sb.mark()
    await server.policy.set(json.dumps({
        "tagOwners": {"tag:server": ["alice@"]},
        "acls": [{"action": "accept", "src": ["alice@", "bob@"], "dst": ["tag:server:*", "10.9.0.0/16:*"]}],
    }))
    await allowed(sb, after=mark)
