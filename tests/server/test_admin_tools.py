"""Every REST call Headplane (tale/headplane, app/server/headscale/api) and headscale-ui
(gurucomputing/headscale-ui, src/lib/common/apiFunctions.svelte) make, sent the way they send
it, with the fields they read (ECOSYSTEM.md)."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime, timedelta

from app.core.authid import new_auth_id
from tests.server.apiclient import Api, api_with_key
from tests.server.conftest import new_client

# Headplane's server-version.ts
SEMVER = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?(?:\+([0-9A-Za-z.-]+))?$")
NODE_FIELDS = {"id", "machineKey", "nodeKey", "discoKey", "ipAddresses", "name", "givenName", "user",
               "lastSeen", "expiry", "createdAt", "registerMethod", "online", "approvedRoutes",
               "availableRoutes", "subnetRoutes", "tags", "preAuthKey"}
USER_FIELDS = {"id", "name", "createdAt", "displayName", "email", "providerId", "provider", "profilePicUrl"}
KEY_FIELDS = {"user", "id", "key", "reusable", "ephemeral", "used", "expiration", "createdAt", "aclTags"}


def iso_ms(dt: datetime) -> str:
    """JavaScript's Date.toISOString()."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


async def test_version_and_health_unauthenticated(server):
    api = Api(server)
    doc = await api.ok("GET", "/version")
    m = SEMVER.match(doc["version"])
    assert m, doc
    assert (int(m[1]), int(m[2]), int(m[3])) >= (0, 28, 0)   # Headplane's capability gate
    assert doc["pyheadscale"]
    status, _ = await api.call("GET", "/health")
    assert status == 200


async def test_headplane_login_check(server):
    api = Api(server)
    status, doc = await api.call("GET", "/api/v1/apikey")
    assert status == 401 and doc["message"]
    # the key as an admin pastes it, created the way `headscale apikeys create` does
    admin = await api_with_key(server)
    keys = (await admin.ok("GET", "/api/v1/apikey"))["apiKeys"]
    match = [k for k in keys if admin.key.startswith(k["prefix"].replace("*", ""))]
    assert len(match) == 1
    assert datetime.fromisoformat(match[0]["expiration"]) > datetime.now(UTC)
    bad = Api(server, admin.key[:-4] + "AAAA")
    status, doc = await bad.call("GET", "/api/v1/apikey")
    assert status == 401 and doc["code"] == 16


async def test_headplane_nodes_users_keys(server):
    api = await api_with_key(server)
    st = server.state
    # users: create with every field Headplane sends, filters by id / name / email
    u = (await api.ok("POST", "/api/v1/user", {"name": "alice", "email": "alice@example.com",
                                               "displayName": "Alice", "pictureUrl": "https://x/p.png"}))["user"]
    assert set(u) == USER_FIELDS and u["displayName"] == "Alice" and u["profilePicUrl"] == "https://x/p.png"
    bob = (await api.ok("POST", "/api/v1/user", {"name": "bob"}))["user"]
    for q in (f"id={u['id']}", "name=alice", "email=alice%40example.com"):
        assert [x["id"] for x in (await api.ok("GET", f"/api/v1/user?{q}"))["users"]] == [u["id"]]

    # pre-auth keys: owned (ephemeral), tag-only, listed masked (all at once, 0.28+), expired by id
    exp = iso_ms(datetime.now(UTC) + timedelta(hours=1))
    eph = (await api.ok("POST", "/api/v1/preauthkey",
                        {"ephemeral": True, "reusable": False, "expiration": exp, "user": u["id"]}))["preAuthKey"]
    assert set(eph) == KEY_FIELDS and eph["key"].startswith("hskey-auth-") and not eph["key"].endswith("***")
    assert eph["user"]["id"] == u["id"]
    tagged = (await api.ok("POST", "/api/v1/preauthkey", {"ephemeral": False, "reusable": True,
                                                          "expiration": None, "aclTags": ["tag:srv"]}))["preAuthKey"]
    assert tagged["user"] is None and tagged["aclTags"] == ["tag:srv"]
    listed = (await api.ok("GET", "/api/v1/preauthkey"))["preAuthKeys"]
    assert [k["id"] for k in listed] == [eph["id"], tagged["id"]]
    assert all(k["key"].endswith("-***") for k in listed)

    await st.load_policy('{"tagOwners": {"tag:srv": ["alice@"]}, "acls": [{"action": "accept", '
                         '"src": ["*"], "dst": ["*:*"]}]}')
    # real registrations: an ephemeral user node and a tagged node
    c1 = await new_client(server)
    await c1.register(eph["key"], hostinfo={"Hostname": "laptop", "RoutableIPs": ["10.1.0.0/24", "0.0.0.0/0", "::/0"]})
    c2 = await new_client(server)
    await c2.register(tagged["key"], hostinfo={"Hostname": "srv"})
    try:
        nodes = (await api.ok("GET", "/api/v1/node"))["nodes"]
        assert len(nodes) == 2 and all(set(n) == NODE_FIELDS for n in nodes)
        laptop, srv = nodes
        assert laptop["preAuthKey"]["ephemeral"] is True and laptop["preAuthKey"]["id"] == eph["id"]
        assert laptop["user"]["name"] == "alice" and laptop["tags"] == []
        assert laptop["lastSeen"] is None              # never connected a map stream
        assert laptop["discoKey"] == "discokey:" + "0" * 64
        assert laptop["registerMethod"] == "REGISTER_METHOD_AUTH_KEY"
        assert srv["tags"] == ["tag:srv"] and srv["preAuthKey"]["aclTags"] == ["tag:srv"]
        assert srv["user"] == {"id": "2147455555", "name": "tagged-devices", "displayName": "Tagged Devices",
                               "createdAt": None, "email": "", "providerId": "", "provider": "",
                               "profilePicUrl": ""}
        one = (await api.ok("GET", f"/api/v1/node/{laptop['id']}"))["node"]
        assert one["id"] == laptop["id"] and one["preAuthKey"]["id"] == eph["id"]

        # machine actions, exactly as Headplane sends them
        await api.ok("POST", f"/api/v1/node/{laptop['id']}/rename/{'new-laptop'}")
        assert st.nodes[int(laptop["id"])].given_name == "new-laptop"
        await api.ok("POST", f"/api/v1/node/{laptop['id']}/approve_routes",
                     {"routes": ["10.1.0.0/24", "0.0.0.0/0", "::/0"]})
        n = (await api.ok("GET", f"/api/v1/node/{laptop['id']}"))["node"]
        assert set(n["approvedRoutes"]) == {"10.1.0.0/24", "0.0.0.0/0", "::/0"}
        assert set(n["availableRoutes"]) == {"10.1.0.0/24", "0.0.0.0/0", "::/0"}
        await api.ok("POST", f"/api/v1/node/{srv['id']}/tags", {"tags": ["tag:srv", "tag:web"]})
        assert (await api.ok("GET", f"/api/v1/node/{srv['id']}"))["node"]["tags"] == ["tag:srv", "tag:web"]
        await api.ok("POST", f"/api/v1/node/{laptop['id']}/expire")
        n = (await api.ok("GET", f"/api/v1/node/{laptop['id']}"))["node"]
        assert n["expiry"] is not None and datetime.fromisoformat(n["expiry"]) <= datetime.now(UTC)

        # expire a pre-auth key by id (0.28+)
        await api.ok("POST", "/api/v1/preauthkey/expire", {"id": tagged["id"]})
        k = next(k for k in (await api.ok("GET", "/api/v1/preauthkey"))["preAuthKeys"] if k["id"] == tagged["id"])
        assert datetime.fromisoformat(k["expiration"]) <= datetime.now(UTC)

        # register a pending machine: Headplane sends user name and key as query and body
        auth_id = new_auth_id()
        await api.ok("POST", "/api/v1/debug/node", {"user": "bob", "key": auth_id, "name": "pending-box"})
        node = (await api.ok("POST", f"/api/v1/node/register?user=bob&key={auth_id}",
                             {"user": "bob", "key": auth_id}))["node"]
        assert node["user"]["id"] == bob["id"] and node["givenName"] == "pending-box"

        await api.ok("DELETE", f"/api/v1/node/{node['id']}")
        status, doc = await api.call("GET", f"/api/v1/node/{node['id']}")
        assert status == 404 and doc["code"] == 5
        await api.ok("POST", f"/api/v1/user/{bob['id']}/rename/{'robert'}")
        await api.ok("DELETE", f"/api/v1/user/{bob['id']}")
    finally:
        await c1.close()
        await c2.close()


async def test_headplane_policy_page(server):
    api = await api_with_key(server)
    # fresh server: Headplane offers an empty, editable policy when the text says so
    status, _, raw = await api.raw("GET", "/api/v1/policy")
    assert status == 404 and b"acl policy not found" in raw
    doc = await api.ok("PUT", "/api/v1/policy", {"policy": '{"acls": [{"action": "accept", "src": ["*"], '
                                                           '"dst": ["*:*"]}]}'})
    assert doc["updatedAt"] is not None and "acls" in doc["policy"]
    got = await api.ok("GET", "/api/v1/policy")
    assert got["policy"] == doc["policy"] and got["updatedAt"] is not None   # writable in Headplane
    # rejected policies: the two texts Headplane shows inline as a syntax error
    status, err = await api.call("PUT", "/api/v1/policy", {"policy": '{"acls": [}'})
    assert status == 400 and "parsing HuJSON:" in err["message"]
    status, err = await api.call("PUT", "/api/v1/policy", {"policy": '{"acls": [{"action": "drop"}]}'})
    assert status == 400 and "parsing policy from bytes:" in err["message"]
    assert (await api.ok("GET", "/api/v1/policy"))["policy"] == doc["policy"]


async def test_headscale_ui_calls(server):
    api = await api_with_key(server)
    await api.ok("POST", "/api/v1/user", {"name": "carol"})
    users = (await api.ok("GET", "/api/v1/user"))["users"]
    carol = users[0]
    # API keys page: create (string back), list, expire by the prefix it lists
    new = (await api.ok("POST", "/api/v1/apikey", {"expiration": iso_ms(datetime.now(UTC) + timedelta(days=9))}))
    assert isinstance(new["apiKey"], str) and new["apiKey"].startswith("hskey-api-")
    keys = (await api.ok("GET", "/api/v1/apikey"))["apiKeys"]
    assert all({"id", "prefix", "expiration", "createdAt", "lastSeen"} <= set(k) for k in keys)
    other = next(k for k in keys if new["apiKey"].startswith(k["prefix"].replace("*", "")))
    await api.ok("POST", "/api/v1/apikey/expire", {"prefix": other["prefix"]})
    status, _ = await Api(server, new["apiKey"]).call("GET", "/api/v1/user")
    assert status == 401

    # pre-auth keys per user card: ?user=<id>, create with user id, expire with {user, key}
    await api.ok("POST", "/api/v1/user", {"name": "dave"})
    dave = (await api.ok("GET", "/api/v1/user?name=dave"))["users"][0]
    exp = iso_ms(datetime.now(UTC) + timedelta(hours=2))
    await api.ok("POST", "/api/v1/preauthkey", {"user": carol["id"], "expiration": exp,
                                                "reusable": True, "ephemeral": False})
    await api.ok("POST", "/api/v1/preauthkey", {"user": dave["id"], "expiration": exp,
                                                "reusable": False, "ephemeral": False})
    mine = (await api.ok("GET", f"/api/v1/preauthkey?user={carol['id']}"))["preAuthKeys"]
    assert len(mine) == 1 and mine[0]["user"]["id"] == carol["id"] and mine[0]["reusable"] is True
    await api.ok("POST", "/api/v1/preauthkey/expire", {"user": carol["id"], "key": mine[0]["key"]})
    mine = (await api.ok("GET", f"/api/v1/preauthkey?user={carol['id']}"))["preAuthKeys"]
    assert datetime.fromisoformat(mine[0]["expiration"]) <= datetime.now(UTC)
    theirs = (await api.ok("GET", f"/api/v1/preauthkey?user={dave['id']}"))["preAuthKeys"]
    assert len(theirs) == 1 and datetime.fromisoformat(theirs[0]["expiration"]) > datetime.now(UTC)

    # device registration with user id and key in the query only, no body
    auth_id = new_auth_id()
    await api.ok("POST", "/api/v1/debug/node", {"user": "carol", "key": auth_id, "name": "box"})
    node = (await api.ok("POST", f"/api/v1/node/register?user={carol['id']}&key={auth_id}"))["node"]
    assert node["user"]["name"] == "carol"
    devices = (await api.ok("GET", "/api/v1/node"))["nodes"]
    assert {"id", "name", "givenName", "lastSeen", "ipAddresses", "tags", "approvedRoutes", "availableRoutes",
            "subnetRoutes", "user", "online"} <= set(devices[0])
    await api.ok("POST", f"/api/v1/node/{node['id']}/tags", {"tags": ["tag:x"]})
    await api.ok("POST", f"/api/v1/node/{node['id']}/approve_routes", {"routes": []})
    await api.ok("POST", f"/api/v1/node/{node['id']}/rename/{'box2'}")
    # moving a device (removed in headscale 0.28): a JSON error whose message says what to do
    status, err = await api.call("POST", f"/api/v1/node/{node['id']}/user", {"user": int(dave["id"])})
    assert status == 400 and "tag" in err["message"] and err["details"] == []
    await api.ok("DELETE", f"/api/v1/node/{node['id']}")
    await api.ok("POST", f"/api/v1/user/{dave['id']}/rename/{'david'}")
    await api.ok("DELETE", f"/api/v1/user/{dave['id']}")


async def test_unknown_api_routes_answer_json(server):
    api = await api_with_key(server)
    status, doc = await api.call("GET", "/api/v1/routes")       # removed in headscale 0.26
    assert status == 404 and doc == {"code": 5, "message": "Not Found", "details": []}
    status, doc = await api.call("PATCH", "/api/v1/user")
    assert status == 405 and doc["message"] == "Method Not Allowed" and doc["details"] == []
    status, hdrs, _raw = await api.raw("GET", "/api/v2/anything")
    assert status == 404 and hdrs["content-type"].startswith("application/json")
    status, doc = await api.call("POST", "/api/v1/user", raw=b"{not json")
    assert status == 400 and set(doc) == {"code", "message", "details"}
    # an oversized body is refused from its Content-Length, before it is sent
    reader, writer = await asyncio.open_connection(*server.addresses["listen"])
    writer.write(f"POST /api/v1/user HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {api.key}\r\n"
                 f"Content-Type: application/json\r\nContent-Length: {5 * 2**20}\r\n\r\n{{".encode())
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    length = int(re.search(rb"(?i)content-length: *(\d+)", head)[1])
    doc = json.loads(await asyncio.wait_for(reader.readexactly(length), 10))
    writer.close()
    assert head.startswith(b"HTTP/1.1 413") and doc["code"] == 8 and "4 MiB" in doc["message"]
    # outside /api the plain pages stay
    status, hdrs, _ = await api.raw("GET", "/no-such-page")
    assert status == 404 and not hdrs["content-type"].startswith("application/json")
