"""headscale policy … / auth … / debug create-node"""

import pytest

from app.cli import hooks
from tests.cli.conftest import NODE

POLICY = '{\n  // HuJSON\n  "acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}],\n}\n'


def test_policy_get_prints_raw_hujson_even_with_output(run, api):
    api.reply("GET", "/api/v1/policy", {"policy": POLICY, "updatedAt": "2026-07-01T00:00:00Z"})
    for argv in (["policy", "get"], ["policy", "show", "-o", "json"], ["policy", "view"], ["policy", "fetch"]):
        r = run(*argv)
        assert (r.code, r.out) == (0, POLICY + "\n")


def test_policy_set_and_check(run, api, tmp_path):
    f = tmp_path / "policy.hujson"
    f.write_text(POLICY)
    api.reply("PUT", "/api/v1/policy", {"policy": POLICY, "updatedAt": "2026-07-01T00:00:00Z"})
    api.reply("POST", "/api/v1/policy/check", {})
    r = run("policy", "set", "-f", str(f))
    assert (r.code, r.out) == (0, "Policy updated.\n") and api.last.body == {"policy": POLICY}
    r = run("policy", "check", "--file", str(f))
    assert (r.code, r.out) == (0, "Policy is valid\n") and api.last.path == "/api/v1/policy/check"
    assert api.last.body == {"policy": POLICY}


def test_policy_errors(run, api, tmp_path):
    assert run("policy", "set").code == 2
    r = run("policy", "set", "-f", str(tmp_path / "missing.hujson"))
    assert r.code == 1 and r.err.startswith("Error: reading policy file:") and "No such file" in r.err
    f = tmp_path / "bad.hujson"
    f.write_text("{")
    api.reply("POST", "/api/v1/policy/check",
              {"code": 3, "message": "parsing policy: hujson: line 1, column 2: unexpected EOF"}, status=400)
    r = run("policy", "check", "-f", str(f))
    assert (r.code, r.err) == (1, "Error: parsing policy: hujson: line 1, column 2: unexpected EOF\n")


def test_policy_bypass_without_hook_is_a_clear_error(run, api, monkeypatch):
    monkeypatch.setattr(hooks, "offline_policy", None)   # app.main installs it; other tests may have run that
    r = run("policy", "get", "--bypass-server-and-access-database-directly")
    assert r.code == 1 and "not yet supported offline" in r.err and api.requests == []
    r = run("policy", "get", "--bypass-grpc-and-access-database-directly", "--force")
    assert r.code == 1 and "not yet supported offline" in r.err


@pytest.fixture
def offline_hook():
    calls = []

    def hook(action, cfg, text):
        calls.append((action, cfg.unix_socket, text))
        if text == "bad":
            raise ValueError("policy is invalid: unknown user nobody@")
        return POLICY if action == "get" else ""

    hooks.set_offline_policy(hook)
    yield calls
    hooks.set_offline_policy(None)


def test_policy_bypass_uses_the_hook_after_confirmation(run, api, tmp_path, offline_hook, config_file):
    r = run("policy", "get", "--bypass-server-and-access-database-directly", stdin="y\n")
    assert (r.code, r.out) == (0, POLICY + "\n") and "DO NOT run this command" in r.err
    r = run("policy", "get", "--bypass-server-and-access-database-directly", stdin="n\n")
    assert (r.code, r.err.splitlines()[-1]) == (1, "Error: command aborted by user")
    f = tmp_path / "p.hujson"
    f.write_text("bad")
    r = run("policy", "check", "-f", str(f), "--bypass-grpc-and-access-database-directly", "--force")
    assert (r.code, r.err) == (1, "Error: policy is invalid: unknown user nobody@\n")
    assert [c[0] for c in offline_hook] == ["get", "check"]
    assert api.requests == []


def test_auth_register_approve_reject(run, api):
    api.reply("POST", "/api/v1/auth/register", {"node": NODE})
    api.reply("POST", "/api/v1/auth/approve", {})
    api.reply("POST", "/api/v1/auth/reject", {})
    r = run("auth", "register", "--auth-id", "hskey-reg-xyz", "--user", "alice")
    assert (r.code, r.out) == (0, "Node laptop-1 registered\n")
    assert api.last.body == {"user": "alice", "authId": "hskey-reg-xyz"}
    assert run("auth", "approve", "--auth-id", "a1").out == "Auth request approved\n"
    assert api.last.body == {"authId": "a1"}
    assert run("auth", "reject", "--auth-id", "a1", "-o", "json").json == {}
    assert run("auth", "register", "--auth-id", "x").code == 2


def test_debug_create_node(run, api):
    api.reply("POST", "/api/v1/debug/node", {"node": NODE})
    run("debug", "create-node", "--name", "n1", "-u", "alice", "-k", "k1", "-r", "10.0.0.0/8", "-r", "fd00::/8")
    assert api.last.body == {"user": "alice", "key": "k1", "name": "n1", "routes": ["10.0.0.0/8", "fd00::/8"]}
