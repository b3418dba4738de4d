"""Policy compiler benchmark: a synthetic tailnet of 5,000 nodes, 50 users, 20 groups,
200 tags and 500 ACL/grant rules (plus SSH rules, nodeAttrs and an autogroup:self rule).

Reports wall time and peak traced memory for: parsing, compiling, then computing every
node's packet filter, peers, SSH policy and CapMap, and a recompile after one node changes
(from scratch, and with the previous compilation as the server does it).

    .venv/bin/python -m bench.policy_bench [--nodes N] [--rules N]
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import random
import time
import tracemalloc
from dataclasses import replace

from app.core.model import Node, User
from app.core.policy import compile_policy, parse_policy


def synth(n_nodes: int = 5000, n_users: int = 50, n_groups: int = 20, n_tags: int = 200,
          n_rules: int = 500, seed: int = 7) -> tuple[str, list[User], list[Node]]:
    rnd = random.Random(seed)
    users = [User(id=i + 1, name=f"user{i}", email=f"user{i}@example.com") for i in range(n_users)]
    tags = [f"tag:t{i}" for i in range(n_tags)]
    groups = {f"group:g{i}": [f"user{j}@example.com" for j in rnd.sample(range(n_users), 5)]
              for i in range(n_groups)}
    nodes = []
    v4 = int(ipaddress.IPv4Address("100.64.0.1"))
    v6 = int(ipaddress.IPv6Address("fd7a:115c:a1e0::1"))
    for i in range(n_nodes):
        tagged = i % 10 < 3          # 30% tagged
        node_tags = tuple(rnd.sample(tags, rnd.choice((1, 1, 2)))) if tagged else ()
        routes: tuple[str, ...] = ()
        if tagged and i % 97 == 0:
            routes = (f"10.{i % 250}.0.0/16",)
        if tagged and i % 251 == 0:
            routes = routes + ("0.0.0.0/0", "::/0")
        nodes.append(Node(
            id=i + 1, machine_key=f"mkey:{i:064x}", node_key=f"nodekey:{i:064x}",
            hostname=f"node{i}", given_name=f"node{i}",
            user_id=None if tagged else users[i % n_users].id,
            ipv4=str(ipaddress.IPv4Address(v4 + i)), ipv6=str(ipaddress.IPv6Address(v6 + i)),
            hostinfo={"RoutableIPs": list(routes)}, tags=node_tags, approved_routes=routes,
        ))
    acls, grants = [], []
    for r in range(n_rules):
        kind = r % 5
        port = rnd.choice(("22", "80,443", "5432", "8000-8100", "*"))
        if kind == 0:
            acls.append({"action": "accept", "src": [rnd.choice(list(groups))],
                         "dst": [f"{rnd.choice(tags)}:{port}", f"{rnd.choice(tags)}:{port}"]})
        elif kind == 1:
            acls.append({"action": "accept", "src": [rnd.choice(tags)], "dst": [f"{rnd.choice(tags)}:{port}"]})
        elif kind == 2:
            acls.append({"action": "accept", "proto": "tcp", "src": [rnd.choice(users).email],
                         "dst": [f"{rnd.choice(tags)}:{port}", f"{rnd.choice(list(groups))}:{port}"]})
        elif kind == 3:
            grants.append({"src": [rnd.choice(list(groups)), rnd.choice(tags)], "dst": [rnd.choice(tags)],
                           "ip": [f"tcp:{port}", "icmp:*"]})
        else:
            grants.append({"src": [rnd.choice(tags)], "dst": [rnd.choice(tags)],
                           "app": {"example.com/cap/app": [{"role": "reader"}]}})
    acls.append({"action": "accept", "src": ["autogroup:member"], "dst": ["autogroup:self:*"]})
    acls.append({"action": "accept", "src": ["group:g0"], "dst": ["10.0.0.0/8:*"]})
    policy = {
        "groups": groups,
        "tagOwners": {t: ["group:g1"] for t in tags},
        "hosts": {"db": "10.1.2.3"},
        "acls": acls,
        "grants": grants,
        "ssh": [
            {"action": "accept", "src": ["autogroup:member"], "dst": ["autogroup:self"], "users": ["root"]},
            {"action": "check", "src": ["group:g2"], "dst": [tags[0], tags[1]], "users": ["autogroup:nonroot"]},
        ],
        "nodeAttrs": [{"target": [tags[3]], "attr": ["magicdns-aaaa"]}],
        "autoApprovers": {"routes": {"10.0.0.0/8": ["group:g1"]}, "exitNode": [tags[5]]},
    }
    return json.dumps(policy, indent=1), users, nodes


def _timed(label: str, fn, results: dict[str, float]):
    t0 = time.perf_counter()
    out = fn()
    results[label] = time.perf_counter() - t0
    return out


def run(policy_text: str, users: list[User], nodes: list[Node]) -> dict[str, float]:
    """One pass: parse, compile, every node's results, one edit + recompile + diff."""
    times: dict[str, float] = {}
    policy = _timed("parse", lambda: parse_policy(policy_text), times)
    compiled = _timed("compile", lambda: compile_policy(policy, users, nodes, server_url="https://hs"), times)
    ids = [n.id for n in nodes]
    _timed("filters (all nodes)", lambda: [compiled.filter_rules(i) for i in ids], times)
    _timed("peers (all nodes)", lambda: [compiled.peers(i) for i in ids], times)
    _timed("ssh (all nodes)", lambda: [compiled.ssh_policy(i) for i in ids], times)
    _timed("capmap (all nodes)", lambda: [compiled.cap_map(i) for i in ids], times)
    before = _timed("digests (all nodes)", lambda: {i: compiled.node_digest(i) for i in ids}, times)
    # one node changes (a member becomes tagged): recompile, diff every node
    changed = list(nodes)
    changed[17] = replace(changed[17], tags=("tag:t9",), user_id=None)
    c2 = _timed("recompile after one edit", lambda: compile_policy(policy, users, changed,
                                                                     server_url="https://hs"), times)
    diff = _timed("diff all nodes", lambda: [i for i in ids if c2.node_digest(i) != before[i]], times)
    # the same edit as the server compiles it: with the previous compilation lending what is
    # still valid (unchanged filters come back without a rebuild; app/core/policy/carryover.py)
    c3 = _timed("recompile with previous", lambda: compile_policy(policy, users, changed, server_url="https://hs",
                                                                  previous=compiled), times)
    _timed("filters after it (all nodes)", lambda: [c3.filter_rules(i) for i in ids], times)
    times["_carried_filters"] = sum(c3.filter_rules(i) is compiled.filter_rules(i) for i in ids)
    times["_changed_nodes"] = len(diff)
    times["_rules_per_node"] = sum(len(compiled.filter_rules(i)) for i in ids) / len(ids)
    times["_peers_per_node"] = sum(len(compiled.peers(i)) for i in ids) / len(ids)
    return times


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=5000)
    ap.add_argument("--rules", type=int, default=500)
    args = ap.parse_args(argv)
    text, users, nodes = synth(n_nodes=args.nodes, n_rules=args.rules)
    times = run(text, users, nodes)
    # memory in a second pass: tracemalloc slows Python down several times
    tracemalloc.start()
    policy = parse_policy(text)
    compiled = compile_policy(policy, users, nodes, server_url="https://hs")
    _, peak_compile = tracemalloc.get_traced_memory()
    for n in nodes:
        compiled.filter_rules(n.id)
        compiled.peers(n.id)
        compiled.ssh_policy(n.id)
    current, peak_all = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"policy: {len(policy.acls)} acls, {len(policy.grants)} grants, {len(policy.ssh)} ssh rules; "
          f"{len(nodes)} nodes, {len(users)} users, 20 groups, 200 tags")
    for label, secs in times.items():
        if not label.startswith("_"):
            print(f"  {label:<34} {secs * 1000:9.1f} ms")
    print(f"  {'compile + all filters + all peers':<34} "
          f"{(times['compile'] + times['filters (all nodes)'] + times['peers (all nodes)']) * 1000:9.1f} ms")
    print(f"  peak traced memory: compile {peak_compile / 2**20:.1f} MiB; with every node's filter, "
          f"peers and SSH policy {peak_all / 2**20:.1f} MiB (retained {current / 2**20:.1f} MiB)")
    print(f"  {times['_rules_per_node']:.1f} filter rules and {times['_peers_per_node']:.0f} peers per node; "
          f"{times['_changed_nodes']:.0f} nodes changed after the edit; "
          f"{times['_carried_filters']:.0f} filters carried over by the recompile with previous")
    return times


if __name__ == "__main__":
    main()
