"""Admin input headscale refuses, refused here too: tag names (API, pre-auth keys, console via
State), and API keys created without an expiration (Headplane refuses a key listed without one)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.core.tagnames import admin_tag_problem
from tests.server.apiclient import Api, api_with_key
from tests.server.conftest import new_client


@pytest.mark.parametrize("tag", ["tag:srv", "tag:a", "tag:ci-runner-2"])
def test_valid_tags(tag):
    assert admin_tag_problem(tag) is None


@pytest.mark.parametrize("tag, why", [
    ("srv", "must start with 'tag:'"), ("tag:", "empty"), ("tag:Server", "lowercase"),
    ("tag:1db", "start with a letter"), ("tag:-x", "start with a letter"), ("tag:bad!", "letters, digits"),
    ("tag:a b", "letters, digits"), ("tag:a.b", "letters, digits"), ("tag:a_b", "letters, digits"),
    ("tag:a\n", "letters, digits"), ("tag:é", "start with a letter"), ("tag:a:b", "letters, digits"),
])
def test_invalid_tags_say_why_and_what_is_valid(tag, why):
    problem = admin_tag_problem(tag)
    assert problem and why in problem and "a valid tag is 'tag:'" in problem and "tag:server" in problem


async def test_api_set_tags_and_preauth_tags_refuse_bad_names(server):
    st = server.state
    api = await api_with_key(server)
    user = await st.create_user("alice")
    await st.load_policy('{"tagOwners": {"tag:srv": ["alice@"]}, "acls": [{"action": "accept", '
                         '"src": ["*"], "dst": ["*:*"]}]}')
    _, full = await st.create_preauth_key(user.id, reusable=False, ephemeral=False, expiration=None, tags=[])
    c = await new_client(server)
    await c.register(full, hostinfo={"Hostname": "box"})
    try:
        nid = next(iter(st.nodes))
        for bad in (["tag:bad!"], ["tag:srv", "tag:Srv"], ["tag:"]):
            status, doc = await api.call("POST", f"/api/v1/node/{nid}/tags", {"tags": bad})
            assert status == 400 and doc["code"] == 3 and "a valid tag is" in doc["message"], doc
            assert st.nodes[nid].tags == ()                  # nothing changed
        node = (await api.ok("POST", f"/api/v1/node/{nid}/tags", {"tags": ["tag:srv"]}))["node"]
        assert node["tags"] == ["tag:srv"]

        before = len(await st.list_preauth_keys())
        status, doc = await api.call("POST", "/api/v1/preauthkey",
                                     {"user": str(user.id), "aclTags": ["tag:ok", "tag:no way"]})
        assert status == 400 and "'tag:no way'" in doc["message"] and "a valid tag is" in doc["message"]
        assert len(await st.list_preauth_keys()) == before
        key = (await api.ok("POST", "/api/v1/preauthkey", {"aclTags": ["tag:srv"]}))["preAuthKey"]
        assert key["aclTags"] == ["tag:srv"]
    finally:
        await c.close()


async def test_api_key_without_expiration_gets_the_cli_default(server):
    admin = await api_with_key(server)
    for body in ({}, {"expiration": None}, {"expiration": "0001-01-01T00:00:00Z"}):
        full = (await admin.ok("POST", "/api/v1/apikey", body))["apiKey"]
        listed = (await Api(server, full).ok("GET", "/api/v1/apikey"))["apiKeys"]
        # Headplane's login: find the key by its prefix, require a future expiration
        mine = [k for k in listed if full.startswith(k["prefix"].replace("*", ""))]
        assert len(mine) == 1
        exp = datetime.fromisoformat(mine[0]["expiration"])
        assert timedelta(days=89) < exp - datetime.now(UTC) <= timedelta(days=90), body
    explicit = datetime.now(UTC) + timedelta(hours=3)
    full = (await admin.ok("POST", "/api/v1/apikey", {"expiration": explicit.isoformat()}))["apiKey"]
    k = await server.state.db.get_api_key_by_prefix(full)
    assert abs((k.expiration - explicit).total_seconds()) < 1


async def test_stored_keys_without_expiration_still_read_and_work(server):
    # Keys stored with a NULL expiration (created before the default) never expire, as before,
    # and list as null, as headscale lists a key without one.
    _, full = await server.state.create_api_key(None)
    api = Api(server, full)
    listed = (await api.ok("GET", "/api/v1/apikey"))["apiKeys"]
    assert [k["expiration"] for k in listed] == [None]
