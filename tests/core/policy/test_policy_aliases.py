from __future__ import annotations

import ipaddress
import json

import pytest
from _tailnet import (
    ALICE_LAPTOP,
    ALICE_PHONE,
    BOB_LAPTOP,
    CAROL_LAPTOP,
    EXIT,
    GROUPS,
    NODES,
    ROUTER,
    SERVER,
    TAG_OWNERS,
    USERS,
)

from app.core.policy import compile_policy, parse_policy
from app.core.policy.aliases import AliasError, parse_alias
from app.core.policy.model import AUTOGROUP, GROUP, HOST, PREFIX, TAG, USER, WILDCARD


@pytest.mark.parametrize("text,kind", [
    ("*", WILDCARD),
    ("alice@", USER),
    ("alice@example.com", USER),
    ("user:*@example.com", USER),
    ("group:eng", GROUP),
    ("tag:server", TAG),
    ("autogroup:member", AUTOGROUP),
    ("100.64.0.1", PREFIX),
    ("10.0.0.0/8", PREFIX),
    ("fd7a:115c:a1e0::1", PREFIX),
    ("fd7a:115c:a1e0::/48", PREFIX),
    ("webserver", HOST),
])
def test_alias_kinds(text, kind):
    assert parse_alias(text).kind == kind


def test_prefix_host_bits_are_masked():
    assert parse_alias("10.1.2.3/8").net == ipaddress.ip_network("10.0.0.0/8")


@pytest.mark.parametrize("text", ["foo:bar", "http://x", "a:b:c"])
def test_invalid_aliases(text):
    with pytest.raises(AliasError, match="invalid alias format"):
        parse_alias(text)


def compiled(**sections):
    sections.setdefault("tagOwners", TAG_OWNERS)
    sections.setdefault("groups", GROUPS)
    return compile_policy(parse_policy(json.dumps(sections)), USERS, NODES)


def resolved_ids(c, text):
    r = c.resolve(parse_alias(text))
    return set(c.nodes_in(r.addrs, routes=False, base=r.nodes))


def test_resolution():
    c = compiled(hosts={"db": "100.64.0.10", "lan": "10.33.1.0/24"}, acls=[])
    laptops = {ALICE_LAPTOP.id, ALICE_PHONE.id, BOB_LAPTOP.id, CAROL_LAPTOP.id}
    tagged = {SERVER.id, ROUTER.id, EXIT.id}
    assert resolved_ids(c, "alice@example.com") == {ALICE_LAPTOP.id, ALICE_PHONE.id}
    assert resolved_ids(c, "alice@") == {ALICE_LAPTOP.id, ALICE_PHONE.id}       # by user name
    assert resolved_ids(c, "nobody@") == set()
    assert resolved_ids(c, "group:dev") == {ALICE_LAPTOP.id, ALICE_PHONE.id, BOB_LAPTOP.id}
    assert resolved_ids(c, "user:*@example.com") == {ALICE_LAPTOP.id, ALICE_PHONE.id, BOB_LAPTOP.id}
    assert resolved_ids(c, "tag:server") == {SERVER.id}
    assert resolved_ids(c, "autogroup:member") == laptops
    assert resolved_ids(c, "autogroup:tagged") == tagged
    assert resolved_ids(c, "*") == laptops | tagged
    assert resolved_ids(c, "db") == {SERVER.id}                 # host = that address only
    assert resolved_ids(c, "100.64.0.0/30") == {ALICE_LAPTOP.id, ALICE_PHONE.id, BOB_LAPTOP.id}
    assert resolved_ids(c, "autogroup:internet") == set()


def test_host_resolves_to_its_prefix_not_the_nodes_other_ips():
    c = compiled(hosts={"db": "100.64.0.10"}, acls=[])
    assert c.full(c.resolve(parse_alias("db"))).strings() == ["100.64.0.10"]
    assert c.full(c.resolve(parse_alias("tag:server"))).strings() == ["100.64.0.10", "fd7a:115c:a1e0::a"]


def test_wildcard_and_internet_sets():
    c = compiled(acls=[])
    assert c.full(c.resolve(parse_alias("*"))).strings() == [
        "100.64.0.0-100.115.91.255", "100.115.94.0-100.127.255.255", "fd7a:115c:a1e0::/48"]
    internet = c.full(c.resolve(parse_alias("autogroup:internet"))).range_strings()
    assert internet[0] == "0.0.0.0-9.255.255.255"
    assert internet[-1] == "2000::-3fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"


def test_subnet_and_exit_routes_need_approval():
    c = compiled(acls=[])
    assert set(c.tailnet.subnet_routes) == {ROUTER.id}
    assert c.tailnet.exit_nodes == {EXIT.id}
