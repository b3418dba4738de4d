"""Behaviour of the compiler on a small tailnet (see _tailnet.py)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from _tailnet import (
    ALICE,
    ALICE_LAPTOP,
    ALICE_PHONE,
    BOB,
    BOB_LAPTOP,
    CAROL_LAPTOP,
    EXIT,
    GROUPS,
    NODES,
    ROUTER,
    SERVER,
    TAG_OWNERS,
    USERS,
    node,
)

from app.core.policy import PolicyError, check_policy, compile_policy, parse_policy
from app.core.policy.filter import ALLOW_ALL

ALL_IDS = {n.id for n in NODES}


def compiled(nodes=NODES, **sections):
    sections.setdefault("tagOwners", TAG_OWNERS)
    sections.setdefault("groups", GROUPS)
    return compile_policy(parse_policy(json.dumps(sections)), USERS, nodes, server_url="https://hs.example")


def ips(n):
    return [n.ipv4, n.ipv6]


def dst_ips(rules):
    return sorted({d["IP"] for r in rules for d in r.get("DstPorts", ())})


# --- defaults ------------------------------------------------------------------

def test_no_policy_allows_everything():
    c = compile_policy(None, USERS, NODES)
    for n in NODES:
        assert c.filter_rules(n.id) == ALLOW_ALL
        assert c.peers(n.id) == ALL_IDS - {n.id}
        assert c.ssh_policy(n.id) is None
        assert c.cap_map(n.id) == {}


def test_policy_without_rules_is_the_default_grant():
    c = compiled()
    rules = c.filter_rules(SERVER.id)
    assert rules == [{"SrcIPs": ["100.64.0.0-100.115.91.255", "100.115.94.0-100.127.255.255",
                                 "fd7a:115c:a1e0::/48", "10.33.0.0/16"],
                      "DstPorts": [{"IP": "*", "Ports": {"First": 0, "Last": 65535}}]}]
    assert all(c.peers(n.id) == ALL_IDS - {n.id} for n in NODES)


@pytest.mark.parametrize("section", ["acls", "grants"])
def test_empty_rule_list_denies_everything(section):
    c = compiled(**{section: []})
    assert all(c.filter_rules(n.id) == [] and c.peers(n.id) == frozenset() for n in NODES)


# --- filters and peers -------------------------------------------------------------

def test_group_to_tag_port():
    c = compiled(acls=[{"action": "accept", "src": ["group:dev"], "dst": ["tag:server:22"]}])
    src = sorted(ips(ALICE_LAPTOP) + ips(ALICE_PHONE) + ips(BOB_LAPTOP))
    (rule,) = c.filter_rules(SERVER.id)
    assert sorted(rule["SrcIPs"]) == src
    assert rule["DstPorts"] == [{"IP": ip, "Ports": {"First": 22, "Last": 22}} for ip in ips(SERVER)]
    assert "IPProto" not in rule
    assert c.filter_rules(ALICE_LAPTOP.id) == []
    # visibility is symmetric: the destination sees its sources too
    assert c.peers(SERVER.id) == {ALICE_LAPTOP.id, ALICE_PHONE.id, BOB_LAPTOP.id}
    assert c.peers(BOB_LAPTOP.id) == {SERVER.id}
    assert c.peers(CAROL_LAPTOP.id) == frozenset()


def test_rules_with_same_sources_and_protocol_merge():
    c = compiled(acls=[{"action": "accept", "proto": "tcp", "src": ["alice@example.com"],
                        "dst": ["tag:server:22", "tag:server:443"]},
                       {"action": "accept", "proto": "tcp", "src": ["alice@example.com"],
                        "dst": ["tag:server:80"]}])
    (rule,) = c.filter_rules(SERVER.id)
    assert rule["IPProto"] == [6]
    assert sorted(d["Ports"]["First"] for d in rule["DstPorts"]) == [22, 22, 80, 80, 443, 443]


def test_wildcard_source_with_explicit_source():
    c = compiled(acls=[{"action": "accept", "src": ["*", "tag:server"], "dst": ["tag:router:*"]}])
    (rule,) = c.filter_rules(ROUTER.id)
    assert rule["SrcIPs"][:4] == ["100.64.0.0-100.115.91.255", "100.115.94.0-100.127.255.255",
                                  "fd7a:115c:a1e0::/48", "10.33.0.0/16"]
    assert rule["SrcIPs"][4:] == ips(SERVER)


def test_autogroup_self():
    c = compiled(acls=[{"action": "accept", "src": ["autogroup:member"], "dst": ["autogroup:self:*"]}])
    (rule,) = c.filter_rules(ALICE_LAPTOP.id)
    assert sorted(rule["SrcIPs"]) == sorted(ips(ALICE_LAPTOP) + ips(ALICE_PHONE))
    assert dst_ips([rule]) == sorted(ips(ALICE_LAPTOP))
    assert c.peers(ALICE_LAPTOP.id) == {ALICE_PHONE.id}
    assert c.peers(BOB_LAPTOP.id) == frozenset()
    assert c.filter_rules(SERVER.id) == []


def test_subnet_route_destination():
    c = compiled(acls=[{"action": "accept", "src": ["alice@example.com"], "dst": ["10.33.0.0/16:443"]}])
    (rule,) = c.filter_rules(ROUTER.id)
    assert dst_ips([rule]) == ["10.33.0.0/16"]
    assert c.filter_rules(SERVER.id) == []
    assert c.peers(ROUTER.id) == {ALICE_LAPTOP.id, ALICE_PHONE.id}
    assert c.allowed_ips_for_peer(ALICE_LAPTOP.id, ROUTER.id) == [
        "100.64.0.11/32", "fd7a:115c:a1e0::b/128", "10.33.0.0/16"]
    assert c.allowed_ips_for_peer(ALICE_LAPTOP.id, ROUTER.id, primary_routes=[]) == [
        "100.64.0.11/32", "fd7a:115c:a1e0::b/128"]


def test_exit_node_gets_internet_rules():
    c = compiled(acls=[{"action": "accept", "src": ["bob@example.com"], "dst": ["autogroup:internet:*"]}])
    (rule,) = c.filter_rules(EXIT.id)
    assert rule["DstPorts"][0]["IP"] == "0.0.0.0-9.255.255.255"
    assert c.filter_rules(ROUTER.id) == []
    assert c.peers(BOB_LAPTOP.id) == {EXIT.id}
    assert "0.0.0.0/0" in c.allowed_ips_for_peer(BOB_LAPTOP.id, EXIT.id)
    assert c.peer_cap_map(EXIT.id) == {"suggest-exit-node": None}


def test_capability_grant_is_narrowed_to_the_node():
    c = compiled(grants=[{"src": ["group:dev"], "dst": ["*"], "app": {"example.com/cap/x": [{"a": 1}]}}])
    (rule,) = c.filter_rules(SERVER.id)
    assert rule["CapGrant"] == [{"Dsts": ["100.64.0.10/32", "fd7a:115c:a1e0::a/128"],
                                 "CapMap": {"example.com/cap/x": [{"a": 1}]}}]
    # capability grants make peers too: every destination sees the sources
    assert c.peers(CAROL_LAPTOP.id) == {ALICE_LAPTOP.id, ALICE_PHONE.id, BOB_LAPTOP.id}
    assert c.peers(BOB_LAPTOP.id) == ALL_IDS - {BOB_LAPTOP.id}


def test_drive_grant_sends_sharer_capability_back():
    c = compiled(grants=[{"src": ["bob@example.com"], "dst": ["tag:server"],
                          "app": {"tailscale.com/cap/drive": [{"shares": ["*"], "access": "rw"}]}}])
    (back,) = c.filter_rules(BOB_LAPTOP.id)
    assert back == {"SrcIPs": ips(SERVER), "CapGrant": [
        {"Dsts": ["100.64.0.3/32", "fd7a:115c:a1e0::3/128"], "CapMap": {"tailscale.com/cap/drive-sharer": None}}]}


def test_via_grant_steers_to_tagged_router():
    other = node(13, tags=("tag:server",), routes=("10.33.0.0/16",))
    c = compiled(nodes=NODES + [other], grants=[
        {"src": ["bob@example.com"], "dst": ["10.33.0.0/16"], "ip": ["tcp:443"], "via": ["tag:router"]}])
    (rule,) = c.filter_rules(ROUTER.id)
    assert rule["IPProto"] == [6] and dst_ips([rule]) == ["10.33.0.0/16"]
    assert c.filter_rules(other.id) == []
    assert c.peers(BOB_LAPTOP.id) == {ROUTER.id}


# --- SSH, caps, tags, routes -----------------------------------------------------

def test_ssh_policy():
    c = compiled(ssh=[
        {"action": "accept", "src": ["group:dev"], "dst": ["tag:server"], "users": ["root", "deploy"],
         "acceptEnv": ["LANG"]},
        {"action": "check", "src": ["alice@example.com"], "dst": ["tag:server"], "users": ["autogroup:nonroot"]},
    ])
    check, accept = c.ssh_policy(SERVER.id)["rules"]
    assert check["action"] == {"holdAndDelegate": "https://hs.example/machine/ssh/action/$SRC_NODE_ID/to/"
                                                  "$DST_NODE_ID?local_user=$LOCAL_USER"}
    assert check["sshUsers"] == {"*": "=", "root": ""}
    assert accept["sshUsers"] == {"root": "root", "deploy": "deploy"}
    assert accept["acceptEnv"] == ["LANG"]
    assert accept["action"]["accept"] is True
    assert [p["nodeIP"] for p in accept["principals"]] == [
        "100.64.0.1", "100.64.0.2", "fd7a:115c:a1e0::1", "fd7a:115c:a1e0::2",
        "100.64.0.3", "fd7a:115c:a1e0::3"]
    assert c.ssh_policy(ALICE_LAPTOP.id) == {"rules": []}
    assert compiled(acls=[]).ssh_policy(SERVER.id) is None


def test_ssh_localpart():
    c = compiled(ssh=[{"action": "accept", "src": ["autogroup:member"], "dst": ["autogroup:self"],
                       "users": ["localpart:*@example.com"]}])
    rules = c.ssh_policy(ALICE_LAPTOP.id)["rules"]
    assert [r["sshUsers"] for r in rules] == [{"root": ""}, {"alice": "alice"}]
    assert [r["sshUsers"] for r in c.ssh_policy(CAROL_LAPTOP.id)["rules"]] == [{"root": ""}]


def test_cap_map():
    c = compiled(randomizeClientPort=True, nodeAttrs=[
        {"target": ["tag:server", "bob@example.com"], "attr": ["magicdns-aaaa", "nextdns:abc"]}])
    assert c.cap_map(SERVER.id) == {"randomize-client-port": None, "magicdns-aaaa": None, "nextdns:abc": None}
    assert c.cap_map(ALICE_LAPTOP.id) == {"randomize-client-port": None}


def test_tag_ownership():
    c = compiled(acls=[])
    assert c.node_can_have_tag(ALICE_LAPTOP, "tag:server")
    assert not c.node_can_have_tag(BOB_LAPTOP, "tag:server")
    assert c.node_can_have_tag(ALICE_LAPTOP, "tag:router")          # via group:admins
    assert c.node_can_have_tag(SERVER, "tag:ci")                    # tag:server owns tag:ci
    assert c.node_can_have_tag(ALICE_LAPTOP, "tag:ci")              # and alice owns tag:server
    assert not c.node_can_have_tag(ALICE_LAPTOP, "tag:unknown")
    assert not compile_policy(None, USERS, NODES).node_can_have_tag(ALICE_LAPTOP, "tag:server")


def test_auto_approval():
    c = compiled(acls=[], autoApprovers={"routes": {"10.0.0.0/8": ["tag:router"], "192.168.0.0/16": ["bob@"]},
                                         "exitNode": ["tag:exit"]})
    fresh_router = replace(ROUTER, approved_routes=(), hostinfo={"RoutableIPs": ["10.33.0.0/16", "172.16.0.0/12"]})
    assert c.auto_approved_routes(fresh_router) == {"10.33.0.0/16"}
    fresh_exit = replace(EXIT, approved_routes=())
    assert c.auto_approved_routes(fresh_exit) == {"0.0.0.0/0", "::/0"}
    bob_router = replace(BOB_LAPTOP, hostinfo={"RoutableIPs": ["192.168.1.0/24", "0.0.0.0/0"]})
    assert c.auto_approved_routes(bob_router) == {"192.168.1.0/24"}     # /0 needs exitNode


# --- tests blocks, errors, caching --------------------------------------------------

def test_policy_tests_run_on_compile():
    policy = json.dumps({"tagOwners": TAG_OWNERS, "groups": GROUPS,
                         "acls": [{"action": "accept", "src": ["group:dev"], "dst": ["tag:server:22"]}],
                         "tests": [{"src": "bob@example.com", "accept": ["tag:server:22"], "deny": ["tag:server:80"]},
                                   {"src": "carol@other.org", "accept": ["tag:server:22"]}]})
    with pytest.raises(PolicyError) as info:
        check_policy(policy, USERS, NODES)
    want = "test(s) failed: carol@other.org -> tag:server:22: expected ALLOWED, got DENIED"
    assert info.value.pairs == [("tests[1]", want)]
    compile_policy(parse_policy(policy), USERS, NODES, run_tests=False)   # boot path: no tests


def test_ssh_tests_run_on_compile():
    policy = json.dumps({"tagOwners": TAG_OWNERS, "groups": GROUPS,
                         "ssh": [{"action": "accept", "src": ["group:dev"], "dst": ["tag:server"], "users": ["root"]}],
                         "sshTests": [{"src": "bob@example.com", "dst": ["tag:server"], "accept": ["root"],
                                       "deny": ["admin"]},
                                      {"src": "alice@example.com", "dst": ["tag:server"], "check": ["root"]}]})
    with pytest.raises(PolicyError) as info:
        check_policy(policy, USERS, NODES)
    want = "test(s) failed: alice@example.com/root -> n10: expected ALLOWED via check, got ALLOWED via accept"
    assert info.value.pairs == [("sshTests[1]", want)]


def test_ambiguous_user_is_rejected():
    twin = replace(BOB, id=9, email="bob@elsewhere.net")     # same name "bob"
    with pytest.raises(PolicyError, match='multiple users found: token "bob@"'):
        compile_policy(parse_policy(json.dumps({"acls": [{"action": "accept", "src": ["bob@"],
                                                          "dst": ["*:*"]}]})), USERS + [twin], NODES)


def test_unknown_node_is_a_key_error():
    c = compiled(acls=[])
    for method in (c.filter_rules, c.peers, c.ssh_policy, c.cap_map):
        with pytest.raises(KeyError):
            method(999)


def test_results_are_cached_and_digests_detect_changes():
    text = {"acls": [{"action": "accept", "src": ["group:dev"], "dst": ["tag:server:22"]}]}
    a, b = compiled(**text), compiled(**text)
    assert a.filter_rules(SERVER.id) is a.filter_rules(SERVER.id)
    assert all(a.node_digest(n.id) == b.node_digest(n.id) for n in NODES)
    moved = [replace(n, user_id=ALICE.id) if n.id == CAROL_LAPTOP.id else n for n in NODES]
    c = compiled(nodes=moved, **text)
    changed = {n.id for n in NODES if a.node_digest(n.id) != c.node_digest(n.id)}
    assert changed == {SERVER.id, CAROL_LAPTOP.id}


def test_digest_parts_and_ssh_check_period():
    c = compiled(ssh=[{"action": "check", "src": ["group:dev"], "dst": ["tag:server"], "users": ["root"],
                       "checkPeriod": "1h"},
                      {"action": "check", "src": ["autogroup:member"], "dst": ["autogroup:self"], "users": ["root"]}])
    assert set(c.node_digests(SERVER.id)) == {"filter", "ssh", "caps", "peers"}
    assert c.ssh_check_period(BOB_LAPTOP.id, SERVER.id) == 3600.0
    assert c.ssh_check_period(ALICE_LAPTOP.id, ALICE_PHONE.id) == 12 * 3600.0
    assert c.ssh_check_period(BOB_LAPTOP.id, ALICE_PHONE.id) is None
    assert c.ssh_check_period(CAROL_LAPTOP.id, SERVER.id) is None
