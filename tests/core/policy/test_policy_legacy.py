"""Policies of the headscale 0.22 generation: YAML files and user names without '@'."""

from __future__ import annotations

import json

import pytest
from _tailnet import node

from app.core.model import User
from app.core.policy import PolicyError, compile_policy, parse_policy
from app.core.policy.legacy import is_yaml_name, yaml_to_json

YAML_ACL = """
# the old tutorials' YAML form, namespaces without '@'
hosts:
  db: 100.64.0.50/32
groups:
  group:admins: [default]
acls:
  - action: accept
    src: [guest]
    dst: ["guest:*"]
  - action: accept
    src: [default]
    dst: ["*:*"]
  - action: accept
    src: [group:admins]
    dst: ["db:5432"]
"""


def test_yaml_policy_reads_like_hujson_and_bare_names_are_users():
    assert is_yaml_name("/etc/headscale/acl.yaml") and is_yaml_name("ACL.YML")
    assert not is_yaml_name("acl.hujson")
    policy = parse_policy(yaml_to_json(YAML_ACL))
    src = [[a.name for a in acl.src] for acl in policy.acls]
    assert src == [["guest@"], ["default@"], ["group:admins"]]
    assert [d.alias.name for d in policy.acls[0].dst] == ["guest@"]
    assert policy.acls[2].dst[0].alias.name == "db"  # a defined host stays a host
    assert policy.groups["group:admins"] == ("default@",)
    text = "\n".join(policy.warnings)
    assert 'acls[0].src[0]: "guest" is read as the user guest@' in text
    assert 'write "guest@:*"' in text
    assert len(policy.warnings) == 4  # guest, guest:*, default, and the group member


def test_bare_user_names_compile_to_that_users_nodes():
    default, guest = User(id=1, name="default"), User(id=2, name="guest")
    users = [default, guest]
    nodes = [node(1, user=default), node(2, user=guest), node(3, user=guest)]
    compiled = compile_policy(parse_policy(yaml_to_json(YAML_ACL)), users, nodes)
    guest_rules = json.dumps(compiled.filter_rules(3))
    assert "100.64.0.2" in guest_rules and "100.64.0.1" in guest_rules  # guest peer + default's rule
    assert compiled.peers(2) == {1, 3}
    # default's node accepts only from default (rule 2); guests cannot reach it
    assert "100.64.0.2" not in json.dumps(compiled.filter_rules(1))


def test_new_style_policies_get_no_warnings():
    assert parse_policy('{"acls": [{"action": "accept", "src": ["alice@"], "dst": ["*:*"]}]}').warnings == ()


def test_broken_yaml_names_the_line():
    with pytest.raises(ValueError, match="invalid YAML at line 3"):
        yaml_to_json("acls:\n  - [unclosed\n")


def test_non_user_words_are_still_errors():
    with pytest.raises(PolicyError, match="autogroup"):
        parse_policy('{"acls": [{"action": "accept", "src": ["*"], "dst": ["autogroup:self"]}]}')
