"""GET /api/v1/node is built from cached per-node pieces (app/server/api_nodes.py): its bytes
must equal the straightforward ``json.dumps({"nodes": [node_json(...)]})`` for every kind of
node, and stay equal after every change that moves a field (rename, tags, routes, expiry,
presence, hostinfo, owner rename, key expiry, deletion)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from app.core.model import Node
from app.server.api_nodes import NodeListCache
from app.server.api_v1 import node_json

from .apiclient import api_with_key


async def _reference(st, user: str | None = None) -> bytes:
    nodes = sorted(st.nodes.values(), key=lambda n: n.id)
    if user:
        nodes = [n for n in nodes if n.user_id is not None and
                 (str(n.user_id) == user or st.users[n.user_id].name == user)]
    keys = {k.id: k for k in await st.list_preauth_keys()}
    return json.dumps({"nodes": [node_json(n, st, keys) for n in nodes]}).encode()


async def _node(st, i: int, **kw) -> Node:
    async with st.lock:
        return await st.create_node(Node(
            id=0, machine_key=f"mkey:{i:064x}", node_key=f"nodekey:{i:064x}",
            disco_key=kw.pop("disco_key", f"discokey:{i:064x}"),
            hostname=kw.pop("hostname", f"host-{i}"), **kw))


async def _populate(st):
    alice = await st.create_user("alice", "Alice A.", "alice@example.com")
    bob = await st.create_user("bob")
    key, _ = await st.create_preauth_key(alice.id, reusable=True, ephemeral=False, expiration=None, tags=[])
    tkey, _ = await st.create_preauth_key(None, reusable=False, ephemeral=True,
                                          expiration=st.now() + timedelta(hours=1), tags=["tag:ci"])
    router = {"Hostname": "router", "RoutableIPs": ["10.1.0.0/24", "0.0.0.0/0", "::/0", "10.0.0.0/8"]}
    nodes = [
        await _node(st, 1, user_id=alice.id, auth_key_id=key.id, register_method="authkey",
                    hostinfo={"Hostname": "host-1"}),
        await _node(st, 2, user_id=bob.id, hostname="Zoë's \"laptop\" \u2603", disco_key="",
                    register_method="cli", expiry=datetime(2031, 5, 6, 7, 8, 9, 120000, tzinfo=UTC)),
        await _node(st, 3, tags=("tag:ci",), auth_key_id=tkey.id, register_method="authkey"),
        await _node(st, 4, user_id=alice.id, hostname="router", hostinfo=router, register_method="oidc"),
        await _node(st, 5, user_id=alice.id, hostname="router2", hostinfo=dict(router)),
    ]
    for n in nodes[3:]:
        await st.approve_routes(n.id, ["10.1.0.0/24", "0.0.0.0/0", "::/0"])
    st.set_online(nodes[0].id, True)
    st.set_online(nodes[3].id, True)
    st.set_online(nodes[4].id, True)
    return alice, bob, key, nodes


async def _check(api, st, cache_warm: list[bytes] | None = None) -> bytes:
    status, headers, body = await api.raw("GET", "/api/v1/node")
    assert status == 200 and headers["content-type"].startswith("application/json")
    assert body == await _reference(st)
    if cache_warm is not None:
        cache_warm.append(body)
    return body


async def test_node_list_bytes_match_straight_serialisation_through_changes(server):
    st = server.state
    api = await api_with_key(server)
    alice, bob, key, nodes = await _populate(st)
    seen: list[bytes] = []
    cold = await _check(api, st, seen)
    assert len(json.loads(cold)["nodes"]) == 5
    assert await _check(api, st) == cold                   # warm: the same bytes

    await st.rename_node(nodes[0].id, "renamed")
    await _check(api, st, seen)
    await st.set_tags(nodes[1].id, ["tag:ci", "tag:web"])
    await _check(api, st, seen)
    await st.approve_routes(nodes[3].id, ["10.1.0.0/24"])   # node 5 becomes primary for nothing new
    await _check(api, st, seen)
    st.set_online(nodes[3].id, False)                      # primary moves to node 5; last seen set
    await _check(api, st, seen)
    st.set_online(nodes[1].id, True)                       # presence only: the record stays
    await _check(api, st, seen)
    await st.expire_node(nodes[0].id)
    await _check(api, st, seen)
    await st.expire_node(nodes[0].id, disable=True)
    await _check(api, st, seen)
    await st.update_from_map_request(st.nodes[nodes[4].id], {"Hostinfo": {"Hostname": "other"}})
    await _check(api, st, seen)
    await st.rename_user(alice.id, "alicia")               # owner and key owner JSON move
    await _check(api, st, seen)
    await st.expire_preauth_key(key.id)                    # the key row moves (store, not State)
    await _check(api, st, seen)
    await st.delete_node(nodes[2].id)
    after_delete = await _check(api, st, seen)
    assert len(json.loads(after_delete)["nodes"]) == 4
    dup = [i for i in range(1, len(seen)) if seen[i] == seen[i - 1]]
    assert not dup, f"changes {dup} did not change the listing"

    status, _, filtered = await api.raw("GET", f"/api/v1/node?user={bob.id}")
    assert status == 200 and filtered == await _reference(st, str(bob.id))
    status, _, filtered = await api.raw("GET", "/api/v1/node?user=alicia")
    assert status == 200 and filtered == await _reference(st, "alicia")
    assert await _check(api, st) == after_delete           # a filtered listing keeps the rest cached


async def test_cache_serialises_only_new_records(server):
    """A warm listing reuses the pieces of unchanged records and rebuilds the changed one."""
    st = server.state
    _, _, _, nodes = await _populate(st)
    cache = NodeListCache()
    keys = {k.id: k for k in await st.list_preauth_keys()}
    listed = sorted(st.nodes.values(), key=lambda n: n.id)
    cache.body(st, listed, keys, complete=True)
    before = dict(cache._entries)
    await st.rename_node(nodes[1].id, "fresh-name")
    listed = sorted(st.nodes.values(), key=lambda n: n.id)
    body = cache.body(st, listed, keys, complete=True)
    assert body.encode() == json.dumps({"nodes": [node_json(n, st, keys) for n in listed]}).encode()
    for n in listed:
        same = cache._entries[n.id][1] is before[n.id][1]
        assert same == (n.id != nodes[1].id), n.id
    await st.delete_node(nodes[0].id)
    cache.body(st, sorted(st.nodes.values(), key=lambda n: n.id), keys, complete=True)
    assert nodes[0].id not in cache._entries               # a complete listing forgets deleted nodes


async def test_node_deleted_while_listing_is_serialised_like_node_json(server):
    """The listing awaits the key list after taking the nodes: a router deleted meanwhile is
    still listed, with node_json's routes for a node that is gone."""
    st = server.state
    _, _, _, nodes = await _populate(st)
    keys = {k.id: k for k in await st.list_preauth_keys()}
    listed = sorted(st.nodes.values(), key=lambda n: n.id)
    await st.delete_node(nodes[3].id)                      # a router, primary for 10.1.0.0/24
    body = NodeListCache().body(st, listed, keys, complete=True)
    assert body.encode() == json.dumps({"nodes": [node_json(n, st, keys) for n in listed]}).encode()
