"""Each compiler stage built alone from a small hand-made tailnet and hand-made rules
(resolver.py, grants.py, ruleindex.py, nodefilter.py, visibility.py), without a
``CompiledPolicy`` around it; and each one's output following a change of its input."""

from __future__ import annotations

import ipaddress
import json
from dataclasses import replace

import pytest
from _tailnet import ALICE_PHONE, BOB_LAPTOP, GROUPS, NODES, SERVER, TAG_OWNERS, USERS

from app.core.policy import compile_policy, parse_policy
from app.core.policy.aliases import Resolved, parse_alias
from app.core.policy.carryover import CarryOver
from app.core.policy.filter import ALLOW_ALL
from app.core.policy.grants import Rules, compile_rules
from app.core.policy.ipset import AddrSet, interval_of
from app.core.policy.model import IpEntry
from app.core.policy.nodefilter import NodeFilters
from app.core.policy.resolver import AliasResolver
from app.core.policy.rule import _MAX, _Rule, _SelfGrant, _ViaGrant
from app.core.policy.ruleindex import RuleIndex
from app.core.policy.tailnet import Tailnet
from app.core.policy.visibility import Visibility

# node ids (see _tailnet.py): alice 1 (laptop), 2 (phone); bob 3; carol 4; tag:server 10;
# tag:router 11 (10.33.0.0/16); tag:exit 12
TAILNET = Tailnet(USERS, NODES)
POLICY = parse_policy(json.dumps({"tagOwners": TAG_OWNERS, "groups": GROUPS, "hosts": {"db": "10.33.0.5"}}))


def ports(port: int) -> list[dict]:
    return [{"First": port, "Last": port}]


def rule(t: Tailnet, src: set[int], dst: set[int], port: int) -> _Rule:
    """src nodes may reach the addresses of dst nodes on ``port`` (any protocol)."""
    addrs = AddrSet.of_addrs(a for n in src for a in t.addrs[n])
    entries = [(t.addr_text[a], a, a, (port, port)) for n in sorted(dst) for a in t.addrs[n]]
    return _Rule(addrs.strings(t.addr_text), addrs, frozenset(src), AddrSet(), (), entries)


def to_cidr(t: Tailnet, src: set[int], cidr: str, port: int) -> _Rule:
    lo, hi = interval_of(cidr)
    addrs = AddrSet.of_addrs(a for n in src for a in t.addrs[n])
    return _Rule(addrs.strings(t.addr_text), addrs, frozenset(src), AddrSet(), (), [(cidr, lo, hi, (port, port))])


def stages(t: Tailnet, rules: Rules, carry: CarryOver | None = None):
    resolver = AliasResolver(POLICY, t)
    index = RuleIndex(t, rules, resolver)
    return index, NodeFilters(t, index, carry), Visibility(t, index, resolver, carry)


# --- alias resolution ------------------------------------------------------------

def test_resolver_resolves_aliases_against_the_tailnet():
    r = AliasResolver(POLICY, TAILNET)
    nodes = {text: set(r.resolve(parse_alias(text)).nodes) for text in (
        "alice@example.com", "group:dev", "group:admins", "tag:server", "tag:nope",
        "autogroup:member", "autogroup:tagged")}
    assert nodes == {"alice@example.com": {1, 2}, "group:dev": {1, 2, 3}, "group:admins": {1, 2},
                     "tag:server": {10}, "tag:nope": set(), "autogroup:member": {1, 2, 3, 4},
                     "autogroup:tagged": {10, 11, 12}}
    assert r.full(r.resolve(parse_alias("tag:server"))).strings() == ["100.64.0.10", "fd7a:115c:a1e0::a"]
    db = r.resolve(parse_alias("db"))
    assert not db.nodes and r.strings(db) == ["10.33.0.5"]
    # hosts and literal prefixes name nodes by address: owners and the routers serving them
    assert r.nodes_in(db.addrs) == {11}
    assert r.nodes_in(db.addrs, routes=False) == frozenset()
    assert r.nodes_in(AddrSet.parse("100.64.0.0/29"), routes=False) == {1, 2, 3, 4}
    assert r.entry_nodes(0, _MAX) == TAILNET.all_nodes
    assert [a.name for a in map(parse_alias, ("nobody@example.com", "ghost", "autogroup:self",
                                              "alice@example.com", "group:dev"))
            if r.resolve_error(a)] == ["nobody@example.com", "ghost", "autogroup:self"]
    # one resolution per alias: later stages share the objects
    assert r.resolve(parse_alias("group:dev")) is r.resolve(parse_alias("group:dev"))


def test_resolver_follows_the_tailnet():
    moved = [replace(BOB_LAPTOP, user_id=1), replace(ALICE_PHONE, tags=("tag:server",), user_id=None)]
    t = Tailnet(USERS, [n for n in NODES if n.id not in (2, 3)] + moved)
    r = AliasResolver(POLICY, t)
    assert r.resolve(parse_alias("alice@example.com")).nodes == {1, 3}
    assert r.resolve(parse_alias("tag:server")).nodes == {2, 10}
    assert r.resolve(parse_alias("bob@example.com")).nodes == frozenset()
    assert r.full(r.resolve(parse_alias("tag:server"))).strings() == [
        "100.64.0.2", "100.64.0.10", "fd7a:115c:a1e0::2", "fd7a:115c:a1e0::a"]


# --- rule compilation -------------------------------------------------------------

def test_compile_rules_turns_acls_and_grants_into_rules():
    policy = parse_policy(json.dumps({"tagOwners": TAG_OWNERS, "groups": GROUPS, "acls": [
        {"action": "accept", "src": ["alice@example.com"], "dst": ["tag:server:22"]},
        {"action": "accept", "src": ["alice@example.com"], "dst": ["tag:server:80", "autogroup:self:*"]},
    ], "grants": [{"src": ["bob@example.com"], "dst": ["10.33.1.0/24"], "ip": ["*"], "via": ["tag:router"]}]}))
    out = compile_rules(policy, AliasResolver(policy, TAILNET))
    # same sources and protocols: one merged rule
    assert len(out.rules) == 1
    (r,) = out.rules
    assert r.src_nodes == {1, 2} and r.src_ips == ["100.64.0.1", "100.64.0.2", "fd7a:115c:a1e0::1",
                                                   "fd7a:115c:a1e0::2"]
    assert [(e[0], e[3]) for e in r.entries] == [("100.64.0.10", (22, 22)), ("fd7a:115c:a1e0::a", (22, 22)),
                                                 ("100.64.0.10", (80, 80)), ("fd7a:115c:a1e0::a", (80, 80))]
    assert [sg.srcs[0].nodes for sg in out.self_grants] == [{1, 2}]
    (vg,) = out.via_grants
    assert vg.tags == ("tag:router",) and vg.src_nodes == {3}
    assert vg.dsts == [ipaddress.ip_network("10.33.1.0/24")]
    # no policy at all: the literal allow-all rule
    (everything,) = compile_rules(None, AliasResolver(None, TAILNET)).rules
    assert everything.src_ips == ["*"] and everything.entries == [("*", 0, _MAX, (0, 65535))]


# --- rule index ---------------------------------------------------------------------

def test_rule_index_by_destination_node():
    t = TAILNET
    rules = Rules([rule(t, {1}, {10}, 22),
                   _Rule(["*"], AddrSet(), frozenset(), AddrSet(), (), [("*", 0, _MAX, (80, 80))]),
                   to_cidr(t, {3}, "10.33.1.0/24", 443),
                   to_cidr(t, {3}, "8.8.8.0/24", 53)])
    index, _, _ = stages(t, rules)
    assert index.entries_of(10) == [(0, 0), (0, 1), (1, 0)]       # its two addresses, and "*"
    assert index.entries_of(1) == [(1, 0)]
    assert index.entries_of(11) == [(1, 0), (2, 0)]                 # the router of 10.33.0.0/16
    assert index.entries_of(12) == [(1, 0), (3, 0)]                 # the exit node, public space
    assert [eid >> 32 for eid in index.universal] == [1]


def test_rule_index_follows_the_tailnet():
    rules = [rule(TAILNET, {1}, {10}, 22), to_cidr(TAILNET, {3}, "10.33.1.0/24", 443)]
    # bob's laptop starts serving 10.33.1.0/24 too; the server leaves
    t = Tailnet(USERS, [n for n in NODES if n.id not in (3, 10)]
                + [replace(BOB_LAPTOP, hostinfo={"RoutableIPs": ["10.33.1.0/24"]}, approved_routes=("10.33.1.0/24",))])
    before, _, _ = stages(TAILNET, Rules(list(rules)))
    after, _, _ = stages(t, Rules(list(rules)))
    assert (before.entries_of(3), before.entries_of(10)) == ([], [(0, 0), (0, 1)])
    assert after.entries_of(3) == [(1, 0)] and after.entries_of(11) == [(1, 0)]
    assert 10 not in after.node_entries


# --- per-node filters -----------------------------------------------------------------

SELF_22 = _SelfGrant([Resolved(nodes=frozenset({1, 2, 3}))], (IpEntry("", ((22, 22),)),), None)


def test_node_filters_reduce_rules_per_node():
    t = TAILNET
    _, filters, _ = stages(t, Rules([rule(t, {1}, {10}, 80)], [SELF_22]))
    assert filters.filter_rules(10) == [{
        "SrcIPs": ["100.64.0.1", "fd7a:115c:a1e0::1"],
        "DstPorts": [{"IP": "100.64.0.10", "Ports": {"First": 80, "Last": 80}},
                     {"IP": "fd7a:115c:a1e0::a", "Ports": {"First": 80, "Last": 80}}]}]
    # autogroup:self: the user's source devices may reach each of the user's devices
    alice_srcs = ["100.64.0.1", "100.64.0.2", "fd7a:115c:a1e0::1", "fd7a:115c:a1e0::2"]
    assert filters.filter_rules(2) == [{
        "SrcIPs": alice_srcs,
        "DstPorts": [{"IP": "100.64.0.2", "Ports": {"First": 22, "Last": 22}},
                     {"IP": "fd7a:115c:a1e0::2", "Ports": {"First": 22, "Last": 22}}]}]
    assert [r.src_ips for r in filters.self_rules_for(1)] == [alice_srcs]
    assert filters.filter_rules(3)[0]["SrcIPs"] == ["100.64.0.3", "fd7a:115c:a1e0::3"]
    assert filters.filter_rules(4) == [] and filters.filter_rules(11) == []   # carol: not a source
    assert filters.filter_rules(10) is filters.filter_rules(10)
    with pytest.raises(KeyError):
        filters.filter_rules(99)
    index = RuleIndex(t, Rules([rule(t, {1}, {10}, 80)]), AliasResolver(None, t))
    assert NodeFilters(t, index, allow_all=True).filter_rules(4) is ALLOW_ALL


def test_node_filters_via_rules():
    t = TAILNET
    src = AddrSet.of_addrs(t.addrs[3])
    vg = _ViaGrant(("tag:router",), src.strings(t.addr_text), src, frozenset({3}), AddrSet(),
                   [ipaddress.ip_network("10.33.1.0/24"), ipaddress.ip_network("10.99.0.0/24")], False,
                   (IpEntry("tcp", ((443, 443),)),))
    _, filters, vis = stages(t, Rules([], [], [vg]))
    assert filters.filter_rules(11) == [{"SrcIPs": ["100.64.0.3", "fd7a:115c:a1e0::3"], "IPProto": [6],
                                         "DstPorts": [{"IP": "10.33.1.0/24", "Ports": {"First": 443, "Last": 443}}]}]
    assert filters.via_rules(12) == [] and filters.filter_rules(3) == []
    assert vis.peers(11) == {3} and vis.peers(3) == {11} and vis.peers(1) == frozenset()


def test_node_filters_follow_the_rules():
    t = TAILNET
    _, old, _ = stages(t, Rules([rule(t, {1}, {10}, 80)]))
    _, new, _ = stages(t, Rules([rule(t, {1}, {10}, 80), rule(t, {3}, {10, 4}, 443)]))
    assert [r["SrcIPs"][0] for r in old.filter_rules(10)] == ["100.64.0.1"]
    assert [r["SrcIPs"][0] for r in new.filter_rules(10)] == ["100.64.0.1", "100.64.0.3"]
    assert old.filter_rules(4) == [] and new.filter_rules(4)[0]["DstPorts"][0]["IP"] == "100.64.0.4"


def test_node_filters_carry_unchanged_filters_over():
    """With the previous compilation's carry-over, an unchanged filter is the same object and a
    changed one is rebuilt."""
    def policy(port):
        return parse_policy(json.dumps({"tagOwners": TAG_OWNERS, "groups": GROUPS, "acls": [
            {"action": "accept", "src": ["alice@example.com"], "dst": ["tag:server:22", f"bob@example.com:{port}"]}]}))
    previous = compile_policy(policy(80), USERS, NODES)
    kept = {nid: previous.filter_rules(nid) for nid in (3, 10)}
    t = Tailnet(USERS, NODES)
    resolver = AliasResolver(policy(8080), t)
    index = RuleIndex(t, compile_rules(resolver.policy, resolver), resolver)
    filters = NodeFilters(t, index, CarryOver(previous, len(t.nodes)))
    assert filters.filter_rules(10) is kept[10]
    assert filters.filter_rules(3) is not kept[3]
    assert filters.filter_rules(3)[0]["DstPorts"][0]["Ports"] == {"First": 8080, "Last": 8080}


# --- visibility ---------------------------------------------------------------------------

def test_visibility_peers_from_rules():
    t = TAILNET
    _, _, vis = stages(t, Rules([rule(t, {1}, {10}, 80)], [SELF_22]))
    # a rule links its sources and destinations both ways; autogroup:self links a user's devices
    assert {nid: set(vis.peers(nid)) for nid in t.nodes} == {
        1: {2, 10}, 2: {1}, 3: set(), 4: set(), 10: {1}, 11: set(), 12: set()}
    base, own = vis.peer_view(1)
    assert base == {10} and own == {1, 2} and vis.peer_view(2)[0] is vis.peer_view(3)[0]
    with pytest.raises(KeyError):
        vis.peers(99)


def test_visibility_self_grant_with_some_of_a_users_devices_as_sources():
    t = TAILNET
    only_laptops = _SelfGrant([Resolved(nodes=frozenset({1, 3}))], (IpEntry("", ((22, 22),)),), None)
    _, filters, vis = stages(t, Rules([], [only_laptops]))
    # a source device sees all of its user's devices; the others see the sources
    assert (vis.peers(1), vis.peers(2), vis.peers(3)) == ({2}, {1}, frozenset())
    assert filters.filter_rules(2)[0]["SrcIPs"] == ["100.64.0.1", "fd7a:115c:a1e0::1"]


def test_visibility_follows_rules_and_tailnet():
    t = TAILNET
    _, _, vis = stages(t, Rules([rule(t, {1}, {10}, 80)]))
    _, _, wider = stages(t, Rules([rule(t, {1}, {10}, 80), rule(t, {3}, {10}, 22)]))
    assert (vis.peers(10), vis.peers(3)) == ({1}, frozenset())
    assert (wider.peers(10), wider.peers(3)) == ({1, 3}, {10})
    assert wider.peers_digest(1) == vis.peers_digest(1) and wider.peers_digest(10) != vis.peers_digest(10)
    # a destination given by address: whoever holds it now is the peer
    moved = Tailnet(USERS, [n for n in NODES if n.id != 10] + [replace(SERVER, id=13)])
    _, _, after = stages(moved, Rules([to_cidr(moved, {1}, "100.64.0.10/32", 80)]))
    assert after.peers(1) == {13} and after.peers(13) == {1}
