"""Golden conformance: every capture in ../shared/testdata/policy-golden against our compiler.

Per captured node we compare the packet filter, the SSH policy, policy-derived CapMap entries
(self and peer view), the visible peers and each peer's AllowedIPs, after normalising order.
Rejected policies must be rejected too, with Tailscale's error text in our message.

A per-category "N passed, M failed" summary is printed at the end of the run (conftest.py).
"""

from __future__ import annotations

import pytest
from _policy_golden import Outcome, case_files, run_case

# Cases that cannot pass, and why. Keep this short: each entry is a deliberate difference.
KNOWN_FAILURES = {
    # headscale rejects features it cannot deliver instead of advertising them
    "nodeattrs-attr-c1-funnel": "Funnel is rejected: headscale has no Funnel ingress (headscale#2527)",
    "nodeattrs-funnel-f1-tag": "Funnel is rejected: headscale has no Funnel ingress (headscale#2527)",
    "nodeattrs-funnel-f2-user": "Funnel is rejected: headscale has no Funnel ingress (headscale#2527)",
    "nodeattrs-ippool-g1-admin": "nodeAttrs ipPool is rejected: the IP allocator does not use it (headscale#2912)",
    "nodeattrs-ippool-g2-group": "nodeAttrs ipPool is rejected: the IP allocator does not use it (headscale#2912)",
    "nodeattrs-ippool-g3-mixed": "nodeAttrs ipPool is rejected: the IP allocator does not use it (headscale#2912)",
    "nodeattrs-target-a10-autogroup-admin": "autogroup:admin needs user roles, which headscale does not have",
    "nodeattrs-target-a11-autogroup-owner": "autogroup:owner needs user roles, which headscale does not have",
    # capture artefact: this topology's addresses are synthetic, so the IPv6 literal in the
    # policy named no node of the captured tailnet and its netmaps hold no rule at all
    "policytest-allpass-grants-only-tag-src-ipv6-literal-dst":
        "capture topology is synthetic; the literal destination matched no captured node",
    # same artefact: the IPv6 literal is a node here but was none in the captured tailnet, so
    # Tailscale failed the sshTest ("resolved to no nodes") where we pass it (headscale skips it too)
    "sshtest-malformed-dst-bare-ipv6":
        "capture topology is synthetic; the literal destination matched no captured node",
}

# Rejected by us as by Tailscale, but the captured message was mangled by anonymisation.
MESSAGE_EXCEPTIONS = {
    "ssh-e1": "anonymiser rewrote the domain in the policy but not in the captured message",
}

RESULTS: dict[str, list[Outcome]] = {}

_FILES = case_files()


@pytest.mark.parametrize("path", _FILES, ids=[p.stem for p in _FILES])
def test_golden_case(path):
    case_id = path.stem
    outcome = run_case(path, check_messages=case_id not in MESSAGE_EXCEPTIONS)
    RESULTS.setdefault(outcome.category, []).append(outcome)
    if outcome.case_id in KNOWN_FAILURES:
        if outcome.ok:
            pytest.fail(f"known failure now passes; remove it from KNOWN_FAILURES: {outcome.case_id}")
        pytest.xfail(KNOWN_FAILURES[outcome.case_id])
    assert outcome.ok, "\n".join(outcome.diffs[:10])


def test_golden_data_present():
    assert len(_FILES) > 800, f"golden data missing under {_FILES[:1]}"


def test_routes_auto_approval_matches_captures():
    """In routes captures every advertised route is approved exactly when autoApprovers allow it."""
    from _policy_golden import build, load, policy_text

    from app.core.policy import compile_policy, parse_policy

    checked = 0
    for path in _FILES:
        if path.parent.name != "routes_results":
            continue
        case = load(path)
        users, nodes, _ = build(case)
        compiled = compile_policy(parse_policy(policy_text(case)), users, nodes, run_tests=False)
        for n in nodes:
            for route in n.routable_ips:
                assert compiled.node_can_approve_route(n, route) == (route in n.approved_routes), \
                    (case["test_id"], n.hostname, route)
                checked += 1
    assert checked > 1000
