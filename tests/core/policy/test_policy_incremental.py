"""Recompiling with ``previous`` (what the server does after every node, user or policy change)
must give exactly what a compilation from scratch gives, and hand out the previous result
objects where nothing changed (sessions then skip those views by identity)."""

from __future__ import annotations

import json
import random
from dataclasses import replace

import pytest

from app.core.model import Node, User
from app.core.policy import compile_policy, parse_policy
from app.core.policy.tailnet import Tailnet

USERS = [User(id=i, name=f"u{i}", email=f"u{i}@example.com") for i in range(1, 5)]
TAGS = ("tag:a", "tag:b", "tag:r")
ROUTES = ("10.1.0.0/24", "10.2.0.0/24", "0.0.0.0/0", "::/0", "100.64.0.0/28")   # the last overlaps nodes
_OWNERS = {"tag:a": ["u1@example.com"], "tag:b": ["group:eng"], "tag:r": ["u1@example.com"]}
_GROUPS = {"group:eng": ["u1@example.com", "u2@example.com"]}
POLICIES = [json.dumps({"tagOwners": _OWNERS, "groups": _GROUPS, **p}) for p in [
    {"acls": [{"action": "accept", "src": ["*"], "dst": ["*:4000"]}]},
    {"acls": [{"action": "accept", "src": ["group:eng"], "dst": ["tag:a:*", "tag:b:22"]},
              {"action": "accept", "src": ["tag:a"], "dst": ["tag:b:443", "10.1.0.0/24:*"]},
              {"action": "accept", "src": ["u3@example.com"], "dst": ["autogroup:internet:*"]}]},
    {"acls": [{"action": "accept", "src": ["autogroup:member"], "dst": ["autogroup:self:*"]},
              {"action": "accept", "src": ["tag:b"], "dst": ["tag:a:443"]}],
     "ssh": [{"action": "accept", "src": ["autogroup:member"], "dst": ["autogroup:self"],
              "users": ["autogroup:nonroot"]}],
     "nodeAttrs": [{"target": ["tag:a"], "attr": ["magicdns-aaaa"]}]},
    {"acls": [{"action": "accept", "src": ["u1@example.com"], "dst": ["autogroup:self:22"]},
              {"action": "accept", "src": ["group:eng"], "dst": ["autogroup:self:80", "tag:a:80"]}]},
    {"grants": [{"src": ["group:eng"], "dst": ["tag:a"], "ip": ["tcp:80"],
                 "app": {"example.com/cap/x": [{"r": 1}]}},
                {"src": ["autogroup:member"], "dst": ["autogroup:self"], "ip": ["*"]},
                {"src": ["u4@example.com"], "dst": ["10.2.0.0/24"], "ip": ["*"], "via": ["tag:r"]}]},
]]


def _node(nid: int, rng: random.Random) -> Node:
    tagged = rng.random() < 0.3
    routes = tuple(rng.sample(ROUTES, rng.randint(0, 2))) if rng.random() < 0.2 else ()
    return Node(id=nid, machine_key=f"mkey:{nid:064x}", node_key=f"nodekey:{nid:064x}",
                hostname=f"n{nid}", given_name=f"n{nid}",
                user_id=None if tagged else rng.choice(USERS).id,
                ipv4=f"100.64.{nid // 250}.{nid % 250 + 1}", ipv6=f"fd7a:115c:a1e0::{nid:x}",
                tags=(rng.choice(TAGS),) if tagged else (), hostinfo={"RoutableIPs": list(routes)},
                approved_routes=routes if rng.random() < 0.8 else routes[:1])


def _views(c, ids):
    return {nid: (c.filter_rules(nid), c.peers(nid), c.ssh_policy(nid), c.cap_map(nid), c.peer_cap_map(nid),
                  c.node_digests(nid)) for nid in ids}


def _change(rng: random.Random, nodes: dict[int, Node], counter: list[int]) -> None:
    op = rng.choice(["join", "leave", "tags", "untag", "routes", "user", "noop"])
    nid = rng.choice(sorted(nodes))
    if op == "join":
        counter[0] += 1
        nodes[counter[0]] = _node(counter[0], rng)
    elif op == "leave" and len(nodes) > 3:
        del nodes[nid]
    elif op == "tags":
        nodes[nid] = replace(nodes[nid], tags=(rng.choice(TAGS),), user_id=None)
    elif op == "untag":
        nodes[nid] = replace(nodes[nid], tags=(), user_id=rng.choice(USERS).id)
    elif op == "routes":
        routes = tuple(rng.sample(ROUTES, rng.randint(0, 2)))
        nodes[nid] = replace(nodes[nid], hostinfo={"RoutableIPs": list(routes)}, approved_routes=routes)
    elif op == "user" and not nodes[nid].tags:
        nodes[nid] = replace(nodes[nid], user_id=rng.choice(USERS).id)


@pytest.mark.parametrize("seed", range(6))
def test_recompile_with_previous_equals_from_scratch(seed):
    rng = random.Random(seed)
    nodes = {i: _node(i, rng) for i in range(1, 41)}
    counter = [40]
    policies = [parse_policy(p) for p in POLICIES]
    policy = rng.choice(policies)
    prev = compile_policy(policy, USERS, list(nodes.values()), server_url="https://hs")
    before = _views(prev, nodes)
    for _ in range(25):
        for _ in range(rng.randint(1, 3)):
            _change(rng, nodes, counter)
        if rng.random() < 0.2:
            policy = rng.choice(policies)
        cur = compile_policy(policy, USERS, list(nodes.values()), server_url="https://hs", previous=prev)
        scratch = compile_policy(policy, USERS, list(nodes.values()), server_url="https://hs")
        got, want = _views(cur, nodes), _views(scratch, nodes)
        assert got == want
        for nid in nodes:
            assert cur.peer_view(nid)[0] | cur.peer_view(nid)[1] == scratch.peer_view(nid)[0] | scratch.peer_view(nid)[1]
            # an unchanged filter is the very object the previous compilation handed out
            if nid in before and before[nid][0] == got[nid][0]:
                assert got[nid][0] is before[nid][0]
        prev, before = cur, got


def test_tailnet_reused_only_for_the_same_records():
    rng = random.Random(1)
    nodes = [_node(i, rng) for i in range(1, 20)]
    t = Tailnet(USERS, nodes)
    assert Tailnet.reuse(t, list(USERS), list(nodes)) is t
    assert Tailnet.reuse(t, USERS, nodes[:-1]) is None                       # a node left
    assert Tailnet.reuse(t, USERS, nodes[1:] + nodes[:1]) is None            # another order
    assert Tailnet.reuse(t, USERS, [replace(nodes[0], tags=("tag:a",))] + nodes[1:]) is None
    assert Tailnet.reuse(t, USERS[:-1] + [replace(USERS[-1], name="x")], nodes) is None


def test_allow_all_style_filter_is_one_list_and_survives_recompiles():
    rng = random.Random(2)
    nodes = [_node(i, rng) for i in range(1, 30)]
    nodes = [replace(n, approved_routes=(), hostinfo={}) for n in nodes]   # no routers: one class
    policy = parse_policy(POLICIES[0])
    c1 = compile_policy(policy, USERS, nodes)
    lists = {id(c1.filter_rules(n.id)) for n in nodes}
    assert len(lists) == 1
    # a node joins: everyone's filter and peer class are the previous objects
    joined = nodes + [replace(nodes[0], id=99, ipv4="100.64.9.9", ipv6="fd7a:115c:a1e0::99")]
    c2 = compile_policy(policy, USERS, joined, previous=c1)
    assert all(c2.filter_rules(n.id) is c1.filter_rules(n.id) for n in nodes)


def test_autogroup_self_extras_are_shared_per_user():
    rng = random.Random(3)
    nodes = [replace(_node(i, rng), tags=(), user_id=USERS[i % 2].id, approved_routes=()) for i in range(1, 21)]
    c = compile_policy(parse_policy(POLICIES[2]), USERS, nodes)
    extras = {}
    for n in nodes:
        base, extra = c.peer_view(n.id)
        assert (base | extra) - {n.id} == c.peers(n.id)
        extras.setdefault(n.user_id, set()).add(id(extra))
    assert all(len(ids) == 1 for ids in extras.values())
