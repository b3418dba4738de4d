"""configtest checks the files the config names (policy, DERP maps) and --migrate rewrites an
older headscale config in today's keys."""

import io

import yaml

from app.cli.main import main
from app.config import load_config

BASE = "dns:\n  base_domain: tailnet.example\n  override_local_dns: false\n"


def cli(*argv, env=None):
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), env=env or {}, stdin=io.StringIO(""), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_configtest_checks_the_policy_file(tmp_path):
    pol = tmp_path / "acl.hujson"
    pol.write_text('{"acls": [{"action": "accept", "src": ["group:nope"], "dst": ["*:*"]}]}')
    p = tmp_path / "config.yaml"
    p.write_text(BASE + f"policy:\n  path: {pol}\n")
    code, _, err = cli("configtest", "-c", str(p))
    assert code == 1
    assert f'policy.path ({pol}): acls[0].src[0]: group not defined in policy: "group:nope"' in err
    pol.write_text('{"acls": [{"action": "accept", "src": ["alice@"], "dst": ["*:*"]}]}')
    assert cli("configtest", "-c", str(p))[0] == 0


def test_configtest_reads_yaml_policies_and_warns_about_bare_user_names(tmp_path):
    pol = tmp_path / "acl.yaml"
    pol.write_text("acls:\n  - action: accept\n    src: [default]\n    dst: ['*:*']\n")
    p = tmp_path / "config.yaml"
    p.write_text(BASE + f"policy:\n  path: {pol}\n")
    code, _, err = cli("configtest", "-c", str(p))
    assert code == 0, err
    assert '"default" is read as the user default@ (headscale 0.22 namespace style); write "default@"' in err
    pol.write_text("acls:\n  - [unclosed\n")
    code, _, err = cli("configtest", "-c", str(p))
    assert code == 1 and "invalid YAML at line" in err


def test_configtest_checks_derp_map_files(tmp_path):
    good, bad = tmp_path / "derp.yaml", tmp_path / "bad.yaml"
    good.write_text("regions:\n  900:\n    regionid: 900\n    regioncode: x\n    nodes:\n"
                    "      - name: 900a\n        regionid: 900\n        hostname: derp.example\n")
    bad.write_text("regions: [1, 2]\n")
    p = tmp_path / "config.yaml"
    p.write_text(BASE + f"derp:\n  paths: [{good}, {bad}, {tmp_path / 'missing.yaml'}]\n")
    code, _, err = cli("configtest", "-c", str(p))
    assert code == 1
    assert f"derp.paths ({bad}): {bad}: 'regions' must be a map" in err
    assert f"derp.paths ({tmp_path / 'missing.yaml'}): cannot be read" in err
    assert f"derp.paths ({good})" not in err


def test_configtest_checks_the_extra_records_file(tmp_path):
    rec = tmp_path / "records.json"
    rec.write_text('[{"name": "a.tailnet.example", "type": "A", "value": "fd7a::1"}]')
    p = tmp_path / "config.yaml"
    p.write_text(BASE + f"  extra_records_path: {rec}\n")
    code, _, err = cli("configtest", "-c", str(p))
    assert code == 1 and f"dns.extra_records_path ({rec}): record 0: value 'fd7a::1' does not match type A" in err
    rec.write_text('[{"name": "a.tailnet.example", "type": "A", "value": "100.64.0.9"}]')
    assert cli("configtest", "-c", str(p))[0] == 0


def test_migrate_prints_todays_keys_which_load_without_warnings(tmp_path):
    p = tmp_path / "config.yaml"
    p.write_text(
        "server_url: https://hs.example.org\n"
        "ip_prefixes:\n  - fd7a:115c:a1e0::/48\n  - 100.64.0.0/10\n"
        "db_type: sqlite3\ndb_path: /var/lib/headscale/db.sqlite\n"
        "acl_policy_path: ''\n"
        "ephemeral_node_inactivity_timeout: 30m\nnode_update_check_interval: 10s\n"
        "private_key_path: /var/lib/headscale/private.key\n"
        "dns_config:\n  override_local_dns: true\n  nameservers: [1.1.1.1]\n  magic_dns: true\n"
        "  base_domain: example.com\n"
        "unix_socket_permission: 0770\nrandomize_client_port: false\n"
    )
    code, out, err = cli("configtest", "-c", str(p), "--migrate")
    assert code == 0
    data = yaml.safe_load(out)
    assert data["prefixes"] == {"v6": "fd7a:115c:a1e0::/48", "v4": "100.64.0.0/10"}
    assert data["database"] == {"type": "sqlite3", "sqlite": {"path": "/var/lib/headscale/db.sqlite"}}
    assert data["dns"]["nameservers"] == {"global": ["1.1.1.1"]} and data["dns"]["base_domain"] == "example.com"
    assert data["node"] == {"ephemeral": {"inactivity_timeout": "30m"}}
    assert data["unix_socket_permission"] == "0770"
    for old in ("ip_prefixes", "db_type", "db_path", "dns_config", "acl_policy_path", "private_key_path",
                "node_update_check_interval", "randomize_client_port", "ephemeral_node_inactivity_timeout"):
        assert old not in data
    assert list(data)[:2] == ["server_url", "prefixes"]  # the file's order is kept
    assert "node_update_check_interval is no longer read" in err
    new = tmp_path / "new.yaml"
    new.write_text(out)
    cfg = load_config(str(new), {})
    assert cfg.warnings == () and cfg.prefixes.v4 == "100.64.0.0/10"
    assert cfg == load_config(str(p), {})


def test_serve_with_a_bad_policy_file_is_one_error_line(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    pol = tmp_path / "acl.yaml"
    pol.write_text("acls:\n  - action: accept\n    src: [group:nope]\n    dst: ['*:*']\n")
    p = tmp_path / "config.yaml"
    p.write_text(BASE + f"policy:\n  path: {pol}\nlisten_addr: 127.0.0.1:0\nmetrics_listen_addr: ''\n"
                 f"unix_socket: {tmp_path / 's.sock'}\nnoise:\n  private_key_path: {tmp_path / 'n.key'}\n"
                 f"database:\n  sqlite:\n    path: {tmp_path / 'db.sqlite'}\nderp:\n  urls: []\n")
    headscale = str(Path(sys.executable).parent / "headscale")
    r = subprocess.run([headscale, "serve", "-c", str(p)], capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 1
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert lines[0].startswith(f"error: policy file {pol}: ") and 'group not defined in policy: "group:nope"' in lines[0]


def test_policy_set_sends_a_yaml_policy_as_json(run, api, tmp_path):
    f = tmp_path / "acl.yaml"
    f.write_text("acls:\n  - action: accept\n    src: [default]\n    dst: ['*:*']\n")
    api.reply("PUT", "/api/v1/policy", {"policy": "{}", "updatedAt": "2026-07-01T00:00:00Z"})
    assert run("policy", "set", "-f", str(f)).code == 0
    import json

    assert json.loads(api.last.body["policy"]) == {
        "acls": [{"action": "accept", "src": ["default"], "dst": ["*:*"]}]}
    f.write_text("acls: [unclosed\n")
    r = run("policy", "set", "-f", str(f))
    assert r.code == 1 and "invalid YAML at line" in r.err
