"""Commands that run without a server, health, and the serve placeholder."""

import io
import json

import yaml

from app.cli import hooks
from app.cli.main import main
from app.core.keys import PRIVATE, parse_key


def cli(*argv, env=None, stdin=""):
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), env=env or {}, stdin=io.StringIO(stdin), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_version():
    code, out, _ = cli("version")
    assert code == 0 and out.startswith("headscale version ")
    code, out, _ = cli("version", "-o", "json")
    info = json.loads(out)
    assert set(info) == {"version", "commit", "buildTime", "go", "dirty"}


def test_generate_private_key():
    code, out, _ = cli("generate", "private-key")
    key = out.strip()
    assert code == 0 and len(parse_key(key, PRIVATE)) == 32 and len(key) == len("privkey:") + 64
    code, out, _ = cli("gen", "private-key", "-o", "json")
    assert json.loads(out)["private_key"].startswith("privkey:")
    assert cli("generate", "private-key")[1] != out


def test_no_command_prints_help():
    code, out, _ = cli()
    assert code == 0 and "users" in out and "preauthkeys" in out


def test_unknown_command():
    code, out, err = cli("frobnicate")
    assert code == 2 and out == "" and err.startswith("Error: unknown command 'frobnicate' for 'headscale'")


def test_configtest_valid(tmp_path):
    p = tmp_path / "config.yaml"
    p.write_text("dns:\n  base_domain: tailnet.example\n  override_local_dns: false\nlisten_adr: x\n")
    code, out, err = cli("configtest", "-c", str(p))
    assert code == 0 and out == f"Configuration is valid ({p})\n"
    assert "Warning: unknown configuration key 'listen_adr'" in err
    code, out, _ = cli("-o", "json", "configtest", "--config", str(p))
    assert json.loads(out)["valid"] is True


def test_configtest_lists_every_problem(tmp_path):
    p = tmp_path / "config.yaml"
    p.write_text("server_url: example.com\nrandomize_client_port: true\nlog:\n  level: loud\n")
    code, out, err = cli("configtest", "-c", str(p))
    assert code == 1 and out == ""
    lines = err.splitlines()
    assert lines[0] == "Error: invalid configuration (5 problems):"
    body = "\n".join(lines[1:])
    for fragment in ("server_url: must start with http:// or https://", "randomize_client_port: this key has been removed",
                     "randomizeClientPort", "log.level: must be one of", "dns.base_domain: must be set",
                     "dns.nameservers.global: must list"):
        assert fragment in body
    code, out, _ = cli("configtest", "-c", str(p), "-o", "yaml")
    doc = yaml.safe_load(out)
    assert code == 1 and doc["valid"] is False and len(doc["problems"]) == 5


def test_configtest_uses_headscale_config_env(tmp_path):
    p = tmp_path / "hs.yaml"
    p.write_text("dns: {base_domain: a.example, override_local_dns: false}\n")
    code, out, _ = cli("configtest", env={"HEADSCALE_CONFIG": str(p)})
    assert code == 0 and str(p) in out
    code, _, err = cli("configtest", env={"HEADSCALE_CONFIG": str(tmp_path / "nope.yaml")})
    assert code == 1 and "not found" in err


def test_dump_config_masks_secrets(tmp_path):
    p = tmp_path / "config.yaml"
    p.write_text("cli:\n  api_key: hskey-api-abc-SECRET\noidc:\n  client_secret: hunter2\n")
    code, out, _ = cli("dumpConfig", "-c", str(p))
    doc = yaml.safe_load(out)
    assert code == 0 and doc["cli"]["api_key"] == "***" and doc["oidc"]["client_secret"] == "***"
    assert "SECRET" not in out and "hunter2" not in out


def test_missing_config_file_for_a_remote_command(tmp_path):
    code, _, err = cli("users", "list", "-c", str(tmp_path / "nope.yaml"))
    assert code == 1 and err == f"Error: loading configuration: config file {tmp_path / 'nope.yaml'}: not found\n"


def test_server_side_config_problems_do_not_stop_the_cli(run, api):
    # run's config has no dns.base_domain: invalid for `serve`, fine for the client
    api.reply("GET", "/api/v1/user", {"users": []})
    assert run("users", "list", env={"HEADSCALE_LOG_LEVEL": "loud"}).code == 0


def test_client_config_problems_do(run, api):
    r = run("users", "list", env={"HEADSCALE_CLI_TIMEOUT": "soon"})
    assert r.code == 1 and r.err.startswith("Error: loading configuration: cli.timeout (from HEADSCALE_CLI_TIMEOUT)")


def test_health(run, api):
    api.reply("GET", "/api/v1/health", {"databaseConnectivity": True})
    r = run("health")
    assert (r.code, r.out) == (0, "Server is healthy\n")
    assert run("health", "-o", "json").json == {"databaseConnectivity": True}
    api.reply("GET", "/api/v1/health", {"databaseConnectivity": False})
    assert run("health").code == 1
    api.reply("GET", "/api/v1/health", "database is locked", status=500, content_type="text/plain")
    r = run("health")
    assert (r.code, r.err) == (1, "Error: database is locked\n")


def test_serve_without_hook():
    code, _, err = cli("serve")
    assert code == 1 and "app.main" in err


def test_serve_hook():
    seen = []
    hooks.set_serve(lambda argv: seen.append(argv) or 0)
    try:
        assert cli("-c", "/x.yaml", "serve")[0] == 0
    finally:
        hooks.set_serve(None)
    assert seen == [["-c", "/x.yaml", "serve"]]


def test_help_for_a_group_and_command():
    code, out, _ = cli("nodes")
    assert code == 0 and "list-routes" in out and "approve-routes" in out
    assert cli("nodes", "list", "--help")[0] == 0


def test_main_entry_point_routes_cli(monkeypatch, capsys):
    from app.main import main as entry

    assert entry(["version"]) == 0
    assert "headscale version" in capsys.readouterr().out


def test_dev_flag_uses_the_embedded_dev_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, _ = cli("--dev", "dumpConfig")
    doc = yaml.safe_load(out)
    assert code == 0 and doc["unix_socket"] == str(tmp_path / "data" / "headscale.sock")
    assert doc["policy"]["mode"] == "database"
    code, out, _ = cli("configtest", "--dev")
    assert code == 0 and "Configuration is valid" in out
