"""`tailscale up --advertise-tags` (Hostinfo.RequestTags) at registration, as headscale 0.28:
an interactive login gets the tags when tagOwners let the user own them and is refused naming
them otherwise; a pre-auth key's node never takes requested tags (the key decides)."""

from __future__ import annotations

import asyncio
import json

import pytest

from app.service.errors import Invalid
from tests.server.conftest import Stream, new_client, user_and_key

POLICY = {
    "groups": {"group:ops": ["carol@"]},
    "tagOwners": {"tag:ci": ["carol@"], "tag:prod": ["group:ops"], "tag:db": ["dave@"]},
    "acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}],
}


async def interactive(server, hostname: str, tags: list[str]):
    c = await new_client(server)
    hostinfo = {"Hostname": hostname, "RequestTags": tags}
    url = (await c.register(None, hostinfo=hostinfo))["AuthURL"]
    follow = asyncio.create_task(c.register(None, hostinfo=hostinfo, Followup=url))
    await asyncio.sleep(0.05)
    return c, url.rsplit("/", 1)[1], follow


async def test_owned_tags_are_applied_at_an_interactive_login(server):
    carol = await server.state.create_user("carol")
    await server.policy.set(json.dumps(POLICY))
    c, auth_id, follow = await interactive(server, "builder", ["tag:prod", "tag:ci"])
    node = await server.registrar.complete(auth_id, carol)
    resp = await asyncio.wait_for(follow, 5)
    assert resp["MachineAuthorized"] is True
    stored = server.state.nodes[node.id]
    assert stored.tags == ("tag:ci", "tag:prod") and stored.user_id is None and stored.expiry is None
    s = Stream(c)
    m = await s.wait(lambda m: "Node" in m)
    assert sorted(m["Node"]["Tags"]) == ["tag:ci", "tag:prod"]
    await s.close()
    # The same machine logging in again (new node key) with the same tags keeps its node.
    c2 = await new_client(server, machine_private=c.machine_private)
    hostinfo = {"Hostname": "builder", "RequestTags": ["tag:ci", "tag:prod"]}
    url = (await c2.register(None, hostinfo=hostinfo))["AuthURL"]
    follow = asyncio.create_task(c2.register(None, hostinfo=hostinfo, Followup=url))
    await asyncio.sleep(0.05)
    again = await server.registrar.complete(url.rsplit("/", 1)[1], carol)
    await asyncio.wait_for(follow, 5)
    assert again.id == node.id and len(server.state.nodes) == 1


async def test_unowned_tags_refuse_the_login_with_the_reason(server):
    carol = await server.state.create_user("carol")
    await server.policy.set(json.dumps(POLICY))
    _, auth_id, follow = await interactive(server, "sneaky", ["tag:ci", "tag:db", "tag:nope"])
    with pytest.raises(Invalid) as e:
        await server.registrar.complete(auth_id, carol)
    assert str(e.value).startswith("requested tags [tag:db tag:nope] are invalid or not permitted: add them "
                                   "to tagOwners for user 'carol'")
    resp = await asyncio.wait_for(follow, 5)
    assert resp == {"Error": "requested tags [tag:db tag:nope] are invalid or not permitted"}
    assert not [n for n in server.state.nodes.values() if n.hostname == "sneaky"]


async def test_without_a_policy_no_tag_can_be_requested(server):
    carol = await server.state.create_user("carol")
    _, auth_id, follow = await interactive(server, "x", ["tag:ci"])
    with pytest.raises(Invalid, match=r"requested tags \[tag:ci\] are invalid or not permitted"):
        await server.registrar.complete(auth_id, carol)
    assert "Error" in await asyncio.wait_for(follow, 5)


async def test_no_requested_tags_registers_an_untagged_node(server):
    carol = await server.state.create_user("carol")
    await server.policy.set(json.dumps(POLICY))
    _, auth_id, follow = await interactive(server, "laptop", [])
    node = await server.registrar.complete(auth_id, carol)
    await asyncio.wait_for(follow, 5)
    assert server.state.nodes[node.id].tags == () and server.state.nodes[node.id].user_id == carol.id


async def test_pre_auth_key_registrations_refuse_requested_tags(server):
    await server.state.create_user("carol")
    await server.policy.set(json.dumps(POLICY))
    _, key = await user_and_key(server, "carol")
    c = await new_client(server)
    resp = await c.register(key, hostinfo={"Hostname": "ci-1", "RequestTags": ["tag:ci"]})
    assert resp == {"Error": "requested tags [tag:ci] are invalid or not permitted"}
    assert not [n for n in server.state.nodes.values() if n.hostname == "ci-1"]
    _, tagged = await user_and_key(server, "carol", tags=["tag:ci"])
    resp = await c.register(tagged, hostinfo={"Hostname": "ci-1"})   # the key's tags apply
    assert resp["MachineAuthorized"] is True
    assert [n.tags for n in server.state.nodes.values() if n.hostname == "ci-1"] == [("tag:ci",)]
