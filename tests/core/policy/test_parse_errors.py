"""Malformed policies: each must be rejected with the right path and a fixable message."""

from __future__ import annotations

import json

import pytest

from app.core.policy import PolicyError, parse_policy

TAGS = {"tag:server": ["alice@"], "tag:prod": ["alice@"]}


def doc(**sections) -> str:
    sections.setdefault("tagOwners", TAGS)
    return json.dumps(sections)


def acl(src, dst, **extra) -> dict:
    return {"action": "accept", "src": src, "dst": dst, **extra}


# (id, policy text, expected path, expected message fragment)
CASES = [
    # --- syntax and shape ---
    ("hujson-trailing-garbage", '{"acls": []} x', "", "parsing HuJSON: line 1, column 14"),
    ("hujson-unterminated-comment", '{"acls": [] /* never closed', "", "unterminated block comment"),
    ("hujson-duplicate-key", '{"acls": [], "acls": []}', "", "duplicate object key 'acls'"),
    ("hujson-single-quotes", "{'acls': []}", "", "expected a string object key"),
    ("not-an-object", "[1, 2]", "", "a policy must be a JSON object"),
    ("unknown-top-level", doc(acl=[]), "acl", 'unknown field "acl"'),
    ("duplicate-case-insensitive", '{"acls": [], "ACLs": []}', "ACLs", 'duplicate field "ACLs"'),
    ("postures-unsupported", doc(postures={}), "postures",
     '"postures" is not supported by headscale (device posture checks)'),
    ("ipsets-unsupported", doc(ipsets={}), "ipsets", '"ipsets" is not supported by headscale (IP sets)'),
    ("acls-not-array", doc(acls={}), "acls", "expected an array, got object"),
    ("acl-not-object", doc(acls=["accept"]), "acls[0]", "expected an object, got string"),
    ("acl-unknown-field", doc(acls=[acl(["*"], ["*:*"], users=["*"])]), "acls[0].users",
     'unknown field "users"'),
    ("randomize-not-bool", doc(randomizeClientPort="yes"), "randomizeClientPort", "expected a boolean"),
    ("src-not-strings", doc(acls=[acl([1], ["*:*"])]), "acls[0].src[0]", "expected a string, got number"),
    # --- ACLs ---
    ("acl-deny", doc(acls=[{"action": "deny", "src": ["*"], "dst": ["*:*"]}]), "acls[0].action",
     'action="deny" is not supported'),
    ("acl-missing-action", doc(acls=[{"src": ["*"], "dst": ["*:*"]}]), "acls[0]", "action must be specified"),
    ("acl-src-tag-without-owner", doc(acls=[acl(["tag:db"], ["*:*"])]), "acls[0].src[0]",
     'src=tag not found: "tag:db" (add it to tagOwners)'),
    ("acl-dst-tag-without-owner", doc(acls=[acl(["*"], ["tag:db:5432"])]), "acls[0].dst[0]",
     'dst="tag:db": tag not found: "tag:db"'),
    ("acl-dst-no-port", doc(acls=[acl(["*"], ["webserver"])]), "acls[0].dst[0]", "hostport must contain a colon"),
    ("acl-dst-port-name", doc(acls=[acl(["*"], ["tag:server:ssh"])]), "acls[0].dst[0]",
     'dst="tag:server:ssh": port range "ssh": invalid first integer'),
    ("acl-dst-self-no-port", doc(acls=[acl(["alice@"], ["autogroup:self"])]), "acls[0].dst[0]",
     'dst="autogroup:self": port range "self": invalid first integer'),
    ("acl-port-out-of-range", doc(acls=[acl(["*"], ["tag:server:70000"])]), "acls[0].dst[0]",
     "port number out of range"),
    ("acl-port-inverted", doc(acls=[acl(["*"], ["tag:server:90-80"])]), "acls[0].dst[0]",
     "first port is greater than last port"),
    ("acl-port-zero", doc(acls=[acl(["*"], ["tag:server:0"])]), "acls[0].dst[0]",
     "first port must be >0, or use '*' for wildcard"),
    ("acl-port-bad-range", doc(acls=[acl(["*"], ["tag:server:1-2-3"])]), "acls[0].dst[0]",
     "invalid port range format"),
    ("acl-brackets-v4", doc(acls=[acl(["*"], ["[10.0.0.1]:80"])]), "acls[0].dst[0]",
     "square brackets are only valid around IPv6 addresses"),
    ("acl-proto-wildcard", doc(acls=[acl(["*"], ["*:*"], proto="*")]), "acls[0].proto", 'proto name "*" not known'),
    ("acl-proto-leading-zero", doc(acls=[acl(["*"], ["*:*"], proto="017")]), "acls[0].proto",
     'leading 0 not permitted in protocol number: "017"'),
    ("acl-proto-out-of-range", doc(acls=[acl(["*"], ["*:*"], proto="300")]), "acls[0].proto",
     "protocol number out of range (0-255): 300"),
    ("acl-proto-unknown", doc(acls=[acl(["*"], ["*:*"], proto="quic")]), "acls[0].proto",
     'invalid protocol number: "quic"'),
    ("acl-icmp-with-port", doc(acls=[acl(["*"], ["tag:server:22"], proto="icmp")]), "acls[0].proto",
     'protocol does not support specific ports: "icmp", only "*" is allowed'),
    ("acl-invalid-alias", doc(acls=[acl(["foo:bar"], ["*:*"])]), "acls[0].src[0]", 'invalid alias format: "foo:bar"'),
    ("acl-undefined-group", doc(acls=[acl(["group:ops"], ["*:*"])]), "acls[0].src[0]",
     'group not defined in policy: "group:ops"'),
    # A bare word that could be a headscale 0.22 user name ([a-z0-9.-]) reads as that user
    # (test_policy_legacy.py); any other must be a host from "hosts".
    ("acl-undefined-host", doc(acls=[acl(["*"], ["db_primary:5432"])]), "acls[0].dst[0]",
     '"db_primary": invalid address'),
    ("acl-self-as-src", doc(acls=[acl(["autogroup:self"], ["*:*"])]), "acls[0].src[0]",
     '"autogroup:self" not valid on the src side of a rule'),
    ("acl-internet-as-src", doc(acls=[acl(["autogroup:internet"], ["*:*"])]), "acls[0].src[0]",
     "autogroup:internet can only be used in ACL destinations"),
    ("acl-danger-all-as-dst", doc(acls=[acl(["*"], ["autogroup:danger-all:*"])]), "acls[0].dst[0]",
     "cannot use autogroup:danger-all as a dst"),
    ("acl-autogroup-admin", doc(acls=[acl(["autogroup:admin"], ["*:*"])]), "acls[0].src[0]",
     '"autogroup:admin" is not supported: headscale has no user roles'),
    ("acl-autogroup-unknown", doc(acls=[acl(["*"], ["autogroup:everyone:*"])]), "acls[0].dst[0]",
     'invalid autogroup: got "autogroup:everyone"'),
    ("acl-self-with-tag-src", doc(acls=[acl(["tag:server"], ["autogroup:self:*"])]), "acls[0].src",
     "autogroup:self can only be used with users, groups, or supported autogroups"),
    # --- groups, hosts, tagOwners, autoApprovers ---
    ("group-name-prefix", doc(groups={"eng": ["alice@"]}), 'groups["eng"]', "group must start with 'group:'"),
    ("group-value-string", doc(groups={"group:eng": "alice@"}), 'groups["group:eng"]',
     "group value must be an array of users"),
    ("group-member-no-at", doc(groups={"group:eng": ["Alice_A"]}), 'groups["group:eng"][0]',
     'username must contain @, got: "Alice_A"'),
    ("group-nested", doc(groups={"group:a": ["group:b"], "group:b": ["bob@"]}), 'groups["group:a"]',
     '"group:b": group members cannot be recursive'),
    ("host-invalid-ip", doc(hosts={"db": "10.0.0.300"}), 'hosts["db"]',
     'hostname contains invalid IP address: hostname "db" address "10.0.0.300"'),
    ("host-name-colon", doc(hosts={"db:1": "10.0.0.1"}), 'hosts["db:1"]', 'invalid hostname: "db:1"'),
    ("tag-starts-with-digit", doc(tagOwners={"tag:1db": ["alice@"]}), 'tagOwners["tag:1db"]',
     "tag names must start with a letter, after 'tag:'"),
    ("tag-without-prefix", doc(tagOwners={"db": ["alice@"]}), 'tagOwners["db"]', "tag must start with 'tag:'"),
    ("tag-owner-format", doc(tagOwners={"tag:db": ["bob_b"]}), 'tagOwners["tag:db"][0]',
     'invalid owner format: "bob_b"'),
    ("tag-owner-undefined-tag", doc(tagOwners={"tag:db": ["tag:ops"]}), 'tagOwners["tag:db"][0]',
     'tag not found: "tag:ops"'),
    ("autoapprover-not-cidr", doc(autoApprovers={"routes": {"10.0.0.1": ["alice@"]}}),
     'autoApprovers.routes["10.0.0.1"]', "invalid route prefix"),
    ("autoapprover-format", doc(autoApprovers={"exitNode": ["bob_b"]}), "autoApprovers.exitNode[0]",
     'invalid auto approver format: "bob_b"'),
    ("autoapprover-unknown-field", doc(autoApprovers={"exitNodes": []}), "autoApprovers.exitNodes",
     'unknown field "exitNodes"'),
    # --- grants ---
    ("grant-no-ip-or-app", doc(grants=[{"src": ["*"], "dst": ["*"]}]), "grants[0]",
     "ip and app can not both be empty"),
    ("grant-cap-url", doc(grants=[{"src": ["*"], "dst": ["*"], "app": {"https://example.com/cap/x": [{}]}}]),
     'grants[0].app["https://example.com/cap/x"]', "capability name must have the form {domain}/{path}"),
    ("grant-cap-tailscale-domain", doc(grants=[{"src": ["*"], "dst": ["*"], "app": {"tailscale.com/cap/x": []}}]),
     'grants[0].app["tailscale.com/cap/x"]', "capability name must not be in the tailscale.com domain"),
    ("grant-via-not-tag", doc(grants=[{"src": ["*"], "dst": ["10.0.0.0/8"], "ip": ["*"], "via": ["alice@"]}]),
     "grants[0].via[0]", "via can only be a tag"),
    ("grant-via-undefined", doc(grants=[{"src": ["*"], "dst": ["10.0.0.0/8"], "ip": ["*"], "via": ["tag:gw"]}]),
     "grants[0].via[0]", 'tag "tag:gw" not found'),
    ("grant-default-route", doc(grants=[{"src": ["*"], "dst": ["0.0.0.0/0"], "ip": ["*"]}]), "grants[0].dst[0]",
     'dst "0.0.0.0/0": to allow all IP addresses, use "*" or "autogroup:internet"'),
    ("grant-app-internet", doc(grants=[{"src": ["*"], "dst": ["autogroup:internet"], "app": {"a.com/x": []}}]),
     "grants[0].dst", "cannot use app grants with autogroup:internet"),
    ("grant-ip-two-colons", doc(grants=[{"src": ["*"], "dst": ["*"], "ip": ["tcp:80:90"]}]), "grants[0].ip[0]",
     "expected only one colon in Internet protocol and port type"),
    ("grant-ip-bare-proto", doc(grants=[{"src": ["*"], "dst": ["*"], "ip": ["icmp"]}]), "grants[0].ip[0]",
     'port range "icmp": invalid first integer'),
    ("grant-self-with-wildcard", doc(grants=[{"src": ["*"], "dst": ["autogroup:self"], "ip": ["*"]}]),
     "grants[0].src", "autogroup:self can only be used with users, groups, or supported autogroups"),
    ("grant-src-posture", doc(grants=[{"src": ["*"], "dst": ["*"], "ip": ["*"], "srcPosture": ["p"]}]),
     "grants[0].srcPosture", "is not supported by headscale (device posture checks)"),
    # --- ssh ---
    ("ssh-deny", doc(ssh=[{"action": "deny", "src": ["alice@"], "dst": ["tag:server"], "users": ["root"]}]),
     "ssh[0].action", '"deny" is not a valid action'),
    ("ssh-no-users", doc(ssh=[{"action": "accept", "src": ["alice@"], "dst": ["tag:server"]}]),
     "ssh[0].users", "users must be specified"),
    ("ssh-user-wildcard", doc(ssh=[{"action": "accept", "src": ["alice@"], "dst": ["tag:server"], "users": ["*"]}]),
     "ssh[0].users[0]", 'user "*" is not valid'),
    ("ssh-dst-wildcard", doc(ssh=[{"action": "accept", "src": ["alice@"], "dst": ["*"], "users": ["root"]}]),
     "ssh[0].dst[0]", "wildcard (*) is not supported as SSH destination"),
    ("ssh-dst-host", doc(hosts={"srv": "10.0.0.1"},
                         ssh=[{"action": "accept", "src": ["alice@"], "dst": ["srv"], "users": ["root"]}]),
     "ssh[0].dst[0]", 'invalid dst "srv"'),
    ("ssh-src-ip", doc(ssh=[{"action": "accept", "src": ["10.0.0.1"], "dst": ["tag:server"], "users": ["root"]}]),
     "ssh[0].src[0]", 'alias not supported for SSH source: "10.0.0.1"'),
    ("ssh-checkperiod-garbage", doc(ssh=[{"action": "check", "src": ["alice@"], "dst": ["tag:server"],
                                          "users": ["root"], "checkPeriod": "abc"}]),
     "ssh[0].checkPeriod", 'time: invalid duration "abc"'),
    ("ssh-checkperiod-too-long", doc(ssh=[{"action": "check", "src": ["alice@"], "dst": ["tag:server"],
                                           "users": ["root"], "checkPeriod": "200h"}]),
     "ssh[0].checkPeriod", "checkPeriod 200h0m0s is above the max (168h)"),
    ("ssh-checkperiod-on-accept", doc(ssh=[{"action": "accept", "src": ["alice@"], "dst": ["tag:server"],
                                            "users": ["root"], "checkPeriod": "1h"}]),
     "ssh[0].checkPeriod", 'checkPeriod is only valid with action "check"'),
    ("ssh-acceptenv-empty", doc(ssh=[{"action": "accept", "src": ["alice@"], "dst": ["tag:server"],
                                      "users": ["root"], "acceptEnv": [""]}]),
     "ssh[0].acceptEnv[0]", "acceptEnv values cannot be empty"),
    ("ssh-tag-to-user", doc(ssh=[{"action": "accept", "src": ["tag:server"], "dst": ["alice@"], "users": ["root"]}]),
     "ssh[0]", "tags in SSH source cannot access user-owned devices"),
    # --- nodeAttrs ---
    ("nodeattr-funnel", doc(nodeAttrs=[{"target": ["*"], "attr": ["funnel"]}]), "nodeAttrs[0].attr[0]",
     "Funnel is not supported by headscale"),
    ("nodeattr-ippool", doc(nodeAttrs=[{"target": ["*"], "ipPool": ["100.80.0.0/16"]}]), "nodeAttrs[0].ipPool[0]",
     "nodeAttrs ipPool is not supported by headscale yet"),
    ("nodeattr-ippool-reserved", doc(nodeAttrs=[{"target": ["*"], "ipPool": ["100.100.100.0/24"]}]),
     "nodeAttrs[0].ipPool[0]", "IPPool(100.100.100.0/24): network within reserved range"),
    ("nodeattr-self", doc(nodeAttrs=[{"target": ["autogroup:self"], "attr": ["magicdns-aaaa"]}]),
     "nodeAttrs[0].target[0]", 'nodeAttrs target does not support this autogroup: "autogroup:self"'),
    # --- tests and sshTests ---
    ("test-no-assertions", doc(tests=[{"src": "alice@"}]), "tests[0]",
     'test(s) failed: test entry must have at least one of "accept" or "deny"'),
    ("test-proto-icmp", doc(tests=[{"src": "alice@", "proto": "icmp", "accept": ["tag:server:22"]}]),
     "tests[0].proto", "test protocol must be tcp, udp, sctp, or empty"),
    ("test-cidr-dst", doc(tests=[{"src": "alice@", "accept": ["10.0.0.0/8:22"]}]), "tests[0].accept[0]",
     "test destination must be a single host, not a CIDR range"),
    ("test-port-range", doc(tests=[{"src": "alice@", "deny": ["tag:server:1-100"]}]), "tests[0].deny[0]",
     "test destination port must be a single port"),
    ("sshtest-cidr-dst", doc(sshTests=[{"src": "alice@", "dst": ["100.64.0.0/24"], "accept": ["root"]}]),
     "sshTests[0].dst[0]", 'SSH tests dst contains disallowed element "100.64.0.0/24"'),
    ("sshtest-empty-src", doc(sshTests=[{"src": "", "dst": ["tag:server"], "accept": ["root"]}]),
     "sshTests[0].src", "SSH tests entry must have a non-empty src"),
]


@pytest.mark.parametrize("text,path,message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rejected_with_path_and_message(text, path, message):
    with pytest.raises(PolicyError) as info:
        parse_policy(text)
    problems = info.value.pairs
    assert any(p == path and message in m for p, m in problems), problems


def test_case_count():
    assert len(CASES) >= 40
    assert len({c[0] for c in CASES}) == len(CASES)


def test_all_problems_are_reported_one_per_line():
    text = doc(acls=[acl(["tag:a"], ["tag:b:22"]), {"action": "deny", "src": ["*"], "dst": ["*:*"]}],
               groups={"eng": ["x@"]})
    with pytest.raises(PolicyError) as info:
        parse_policy(text)
    lines = str(info.value).splitlines()
    assert 'groups["eng"]: group must start with \'group:\', got: "eng"' in lines
    assert any(line.startswith("acls[1].action: ") for line in lines)


def test_cross_reference_problems_are_all_collected():
    text = doc(acls=[acl(["tag:a"], ["tag:b:22"]), acl(["group:x"], ["db_main:5432"])])
    with pytest.raises(PolicyError) as info:
        parse_policy(text)
    paths = [p for p, _ in info.value.pairs]
    assert paths == ["acls[0].src[0]", "acls[0].dst[0]", "acls[1].src[0]", "acls[1].dst[0]"]


def test_tailnet_domains_restrict_domain_wildcards():
    text = doc(ssh=[{"action": "accept", "src": ["autogroup:member"], "dst": ["tag:server"],
                     "users": ["localpart:*@other.org"]}])
    parse_policy(text)      # unchecked without a domain list
    with pytest.raises(PolicyError) as info:
        parse_policy(text, tailnet_domains=["example.com"])
    want = "other.org is not associated with this Tailnet and cannot be used in user:*@<domain> expressions"
    assert info.value.pairs == [("ssh[0].users[0]", want)]
