"""The `headscale` CLI against a running server over its unix socket (no fakes)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest
import yaml

from app.config import load_config
from app.server.serve import build, start, stop
from tests.server.conftest import Stream, new_client

HEADSCALE = str(Path(sys.executable).parent / "headscale")


@pytest.fixture
async def live(tmp_path):
    cfg_path = tmp_path / "config.yaml"
    cfg_path.write_text(yaml.safe_dump({
        "server_url": "http://127.0.0.1:8080",
        "listen_addr": "127.0.0.1:0",
        "metrics_listen_addr": "",
        "noise": {"private_key_path": str(tmp_path / "noise.key")},
        "database": {"type": "sqlite", "sqlite": {"path": str(tmp_path / "db.sqlite")}},
        "unix_socket": str(tmp_path / "hs.sock"),
        "derp": {"urls": [], "server": {"enabled": False}},
        "dns": {"base_domain": "tailnet.test", "override_local_dns": False},
        "policy": {"mode": "database"},
        "tuning": {"batch_change_delay": "20ms"},
    }))
    services = await build(load_config(str(cfg_path), env={}))
    await start(services)

    async def cli(*args: str, ok: bool = True) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            HEADSCALE, "-c", str(cfg_path), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        if ok:
            assert proc.returncode == 0, (args, out, err)
        return proc.returncode, out.decode(), err.decode()

    async def js(*args: str):
        _, out, _ = await cli(*args, "-o", "json")
        return json.loads(out)

    yield services, cli, js, tmp_path
    await stop(services)


async def test_users_and_keys(live):
    _services, cli, js, _ = live
    u = await js("users", "create", "alice", "-d", "Alice A", "-e", "alice@example.com")
    assert u["id"] == "1" and u["name"] == "alice" and u["displayName"] == "Alice A"
    assert [x["name"] for x in await js("users", "list")] == ["alice"]
    await js("users", "rename", "-i", "1", "-r", "alicia")
    assert (await js("users", "list", "-n", "alicia"))[0]["id"] == "1"
    code, _, err = await cli("users", "create", "alicia", ok=False)
    assert code != 0 and "Error" in err + _
    key = await js("preauthkeys", "create", "-u", "1", "--reusable", "-e", "2h", "--tags", "tag:ci")
    assert key["key"].startswith("hskey-auth-") and key["reusable"] is True and key["aclTags"] == ["tag:ci"]
    listed = await js("preauthkeys", "list")
    assert listed[0]["key"].endswith("-***") and listed[0]["id"] == key["id"]
    await cli("preauthkeys", "expire", "-i", key["id"])
    await cli("preauthkeys", "delete", "-i", key["id"])
    assert await js("preauthkeys", "list") == []
    api = (await cli("apikeys", "create", "-e", "1d"))[1].strip()
    assert api.startswith("hskey-api-")
    keys = await js("apikeys", "list")
    assert len(keys) == 1 and keys[0]["prefix"].endswith("-***")
    await cli("apikeys", "expire", "-p", keys[0]["prefix"])
    await cli("apikeys", "delete", "-p", keys[0]["prefix"])
    assert await js("apikeys", "list") == []
    assert (await js("health"))["databaseConnectivity"] is True
    await cli("users", "destroy", "-i", "1", "--force")
    assert await js("users", "list") == []


async def test_node_commands_reach_connected_nodes(live):
    services, cli, js, _ = live
    await js("users", "create", "bob")
    key = (await js("preauthkeys", "create", "-u", "1", "--reusable"))["key"]
    a = await new_client(services)
    await a.register(key, hostinfo={"Hostname": "laptop"})
    b = await new_client(services)
    await b.register(key, hostinfo={"Hostname": "phone"})
    sa = Stream(a)
    first = await sa.wait(lambda m: "Node" in m)
    nodes = await js("nodes", "list")
    assert {n["givenName"] for n in nodes} == {"laptop", "phone"}
    assert all(n["user"]["name"] == "bob" for n in nodes)
    phone = next(n for n in nodes if n["givenName"] == "phone")
    assert phone["online"] is False and first["Peers"][0]["Name"] == "phone.tailnet.test."
    _, human, _ = await cli("nodes", "list")
    assert "laptop" in human and "phone" in human

    mark = sa.mark()
    await cli("nodes", "rename", "-i", phone["id"], "tablet")
    await sa.wait(lambda m: any(p["Name"] == "tablet.tailnet.test." for p in m.get("PeersChanged", [])), after=mark)
    mark = sa.mark()
    await cli("nodes", "tag", "-i", phone["id"], "-t", "tag:mobile")
    await sa.wait(lambda m: any(p.get("Tags") == ["tag:mobile"] for p in m.get("PeersChanged", [])), after=mark)
    mark = sa.mark()
    await cli("nodes", "expire", "-i", phone["id"])
    await sa.wait(lambda m: any(p.get("Expired") for p in m.get("PeersChanged", [])), after=mark)
    mark = sa.mark()
    await cli("nodes", "delete", "-i", phone["id"], "--force")
    await sa.wait(lambda m: int(phone["id"]) in m.get("PeersRemoved", []), after=mark)
    assert [n["givenName"] for n in await js("nodes", "list")] == ["laptop"]
    code, out, err = await cli("nodes", "delete", "-i", "99", "--force", ok=False)
    assert code == 1 and "Error" in (out + err) and "Traceback" not in err
    await sa.close()


async def test_policy_commands(live):
    _services, cli, js, tmp = live
    await js("users", "create", "alice")
    good = tmp / "p.hujson"
    good.write_text('{\n // HuJSON\n "acls": [{"action": "accept", "src": ["alice@"], "dst": ["*:22"]},],\n}\n')
    bad = tmp / "bad.hujson"
    bad.write_text('{"acls": [{"action": "accept", "src": ["group:none"], "dst": ["*:22"]}]}')
    await cli("policy", "check", "-f", str(good))
    code, out, err = await cli("policy", "check", "-f", str(bad), ok=False)
    assert code == 1 and "group:none" in out + err
    await cli("policy", "set", "-f", str(good))
    code, out, err = await cli("policy", "set", "-f", str(bad), ok=False)
    assert code == 1
    _, out, _ = await cli("policy", "get")
    assert "alice@" in out and "// HuJSON" in out


async def test_cli_without_a_running_server(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"unix_socket": str(tmp_path / "none.sock")}))
    proc = await asyncio.create_subprocess_exec(HEADSCALE, "-c", str(cfg), "users", "list",
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 1
    assert b"Traceback" not in err and len((out + err).strip().splitlines()) <= 2


async def test_policy_bypass_works_without_a_server(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({
        "unix_socket": str(tmp_path / "none.sock"), "policy": {"mode": "database"},
        "database": {"type": "sqlite", "sqlite": {"path": str(tmp_path / "db.sqlite")}},
        "noise": {"private_key_path": str(tmp_path / "n.key")}, "derp": {"urls": []},
    }))
    good = tmp_path / "p.json"
    good.write_text('{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:443"]}]}')
    bad = tmp_path / "b.json"
    bad.write_text('{"acls": [{"action": "accept", "src": ["group:x"], "dst": ["*:443"]}]}')

    async def run(*args):
        proc = await asyncio.create_subprocess_exec(
            HEADSCALE, "-c", str(cfg), "--force", *args, "--bypass-server-and-access-database-directly",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        return proc.returncode, (out + err).decode()

    assert (await run("policy", "check", "-f", str(bad)))[0] == 1
    code, out = await run("policy", "set", "-f", str(good))
    assert code == 0, out
    code, out = await run("policy", "get")
    assert code == 0 and "*:443" in out
    code, out = await run("policy", "set", "-f", str(bad))
    assert code == 1 and "group:x" in out
    assert "*:443" in (await run("policy", "get"))[1]


async def test_debug_create_node_backfill_and_register(live):
    services, cli, js, _ = live
    await js("users", "create", "dora")
    auth_id = "hskey-authreq-" + "b" * 24
    made = await js("debug", "create-node", "--name", "fake", "-u", "dora", "-k", auth_id, "-r", "10.1.0.0/24")
    assert made["name"] == "fake"
    node = await js("auth", "register", "--auth-id", auth_id, "--user", "dora")
    assert node["givenName"] == "fake" and node["ipAddresses"][0].startswith("100.64.")
    assert node["availableRoutes"] == ["10.1.0.0/24"]
    await js("nodes", "approve-routes", "-i", node["id"], "-r", "10.1.0.0/24")
    assert (await js("nodes", "list"))[0]["approvedRoutes"] == ["10.1.0.0/24"]
    nid = int(node["id"])
    import dataclasses

    services.state.nodes[nid] = dataclasses.replace(services.state.nodes[nid], ipv6=None)
    code, out, err = await cli("nodes", "backfillips", "--force")
    assert code == 0 and "assigned ipv6" in out + err
    assert len((await js("nodes", "list"))[0]["ipAddresses"]) == 2


async def test_ssh_check_mode_approved_and_rejected_with_the_cli(live):
    services, cli, js, tmp = live
    await js("users", "create", "alice")
    pol = tmp / "ssh.json"
    pol.write_text(json.dumps({"ssh": [{"action": "check", "src": ["alice@"], "dst": ["alice@"],
                                        "users": ["root"], "checkPeriod": "1h"}]}))
    await cli("policy", "set", "-f", str(pol))
    key = (await js("preauthkeys", "create", "-u", "1", "--reusable"))["key"]
    src, dst = await new_client(services), await new_client(services)
    await src.register(key, hostinfo={"Hostname": "laptop"})
    await dst.register(key, hostinfo={"Hostname": "server"})
    ids = {n["givenName"]: n["id"] for n in await js("nodes", "list")}
    path = f"/machine/ssh/action/{ids['laptop']}/to/{ids['server']}?local_user=root"

    # The destination's SSH policy points at us; the first ask is delegated to an admin.
    stream = Stream(dst)
    first = await stream.wait(lambda m: "SSHPolicy" in m)
    rule = first["SSHPolicy"]["rules"][0]
    assert rule["action"]["holdAndDelegate"].endswith("/machine/ssh/action/$SRC_NODE_ID/to/$DST_NODE_ID"
                                                      "?local_user=$LOCAL_USER")
    status, body = await dst.request("GET", path)
    action = json.loads(body)
    assert status == 200 and "/auth/hskey-authreq-" in action["message"]
    follow = action["holdAndDelegate"].split("127.0.0.1:8080", 1)[1]
    auth_id = follow.rsplit("auth_id=", 1)[1]
    waiting = asyncio.create_task(dst.request("GET", follow))
    await asyncio.sleep(0.2)
    assert not waiting.done()                                   # held until an admin decides
    await cli("auth", "approve", "--auth-id", auth_id)
    status, body = await asyncio.wait_for(waiting, 10)
    assert json.loads(body)["accept"] is True
    # Within checkPeriod the pair is let in at once.
    assert json.loads((await dst.request("GET", path))[1]) == {
        "accept": True, "allowAgentForwarding": True, "allowLocalPortForwarding": True,
        "allowRemotePortForwarding": True}

    # The other direction is refused by the admin.
    back = f"/machine/ssh/action/{ids['server']}/to/{ids['laptop']}?local_user=root"
    follow = json.loads((await src.request("GET", back))[1])["holdAndDelegate"].split("127.0.0.1:8080", 1)[1]
    waiting = asyncio.create_task(src.request("GET", follow))
    await asyncio.sleep(0.1)
    await cli("auth", "reject", "--auth-id", follow.rsplit("auth_id=", 1)[1])
    assert json.loads((await asyncio.wait_for(waiting, 10))[1])["reject"] is True

    # Only the destination may ask, unknown check ids start over, unknown ids cannot be approved.
    assert (await src.request("GET", path))[0] == 403
    again = json.loads((await dst.request("GET", path.replace("root", "x") + "&auth_id=hskey-authreq-" + "0" * 24))[1])
    assert "holdAndDelegate" in again and "accept" not in again      # a lost check is re-delegated
    code, out, err = await cli("auth", "approve", "--auth-id", "hskey-authreq-" + "f" * 24, ok=False)
    assert code == 1 and "no pending SSH check" in out + err
    await stream.close()
