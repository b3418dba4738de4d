"""The in-process server's protocol tests (registration, map streams and deltas, sessions,
ephemeral collection, expiry, policy delivery) and the CLI-over-API tests again, on a real
PostgreSQL: everything the server does on SQLite works there too. The functions are the SQLite
modules' own; only the ``server`` and ``live`` fixtures differ."""

from __future__ import annotations

import asyncio
import json

import pytest
import yaml

from app.config import dev_config, load_config
from app.server.serve import build, start, stop
from tests.server.test_cli_live import *  # the CLI against the running server
from tests.server.test_cli_live import HEADSCALE
from tests.server.test_control import *  # the same tests, collected here again
from tests.server.test_policy_delivery import *
from tests.server.test_policy_delivery import tailnet  # noqa: F401 - fixture, uses the server below
from tests.server.test_sessions import *


@pytest.fixture
async def server(tmp_path, postgres):
    name = postgres.create_database("srv", template=postgres.migrated_template())
    cfg = dev_config(str(tmp_path), overrides={
        "listen_addr": "127.0.0.1:0",
        "metrics_listen_addr": "",
        "tuning.batch_change_delay": "20ms",
        "node.ephemeral.inactivity_timeout": "70s",
        "database.type": "postgres",
        "database.postgres.host": "127.0.0.1",
        "database.postgres.port": postgres.port,
        "database.postgres.name": name,
        "database.postgres.user": "postgres",
        "database.postgres.pass": postgres.admin_password,
        "database.postgres.max_open_conns": 4,
        "database.postgres.max_idle_conns": 1,
    })
    services = await build(cfg)
    assert services.state.db.dialect == "postgres"
    await start(services)
    try:
        yield services
    finally:
        await stop(services)
        postgres.drop_database(name)


@pytest.fixture
async def live(tmp_path, postgres):
    name = postgres.create_database("cli", template=postgres.migrated_template())
    cfg_path = tmp_path / "config.yaml"
    cfg_path.write_text(yaml.safe_dump({
        "server_url": "http://127.0.0.1:8080", "listen_addr": "127.0.0.1:0", "metrics_listen_addr": "",
        "noise": {"private_key_path": str(tmp_path / "noise.key")},
        "database": {"type": "postgres", "postgres": {
            "host": "127.0.0.1", "port": postgres.port, "name": name, "user": "postgres",
            "pass": postgres.admin_password, "max_open_conns": 4, "max_idle_conns": 1}},
        "unix_socket": str(tmp_path / "hs.sock"), "derp": {"urls": [], "server": {"enabled": False}},
        "dns": {"base_domain": "tailnet.test", "override_local_dns": False},
        "policy": {"mode": "database"}, "tuning": {"batch_change_delay": "20ms"},
    }))
    services = await build(load_config(str(cfg_path), env={}))
    assert services.state.db.dialect == "postgres"
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
    postgres.drop_database(name)


async def test_peer_deltas_reach_the_other_node(server):  # replaces the imported one
    """test_control's version, waiting for the patch that carries the new endpoints: b's
    stream start sends its first endpoints as a patch too, which on PostgreSQL's slower writes
    can reach a after the PeersChanged the original waits for."""
    from tests.server.conftest import Stream, user_and_key
    from tests.server.test_control import registered

    _, key = await user_and_key(server)
    a = await registered(server, key, "a")
    sa = Stream(a, Hostinfo={"Hostname": "a"})
    await sa.wait(lambda m: "Node" in m)
    b = await registered(server, key, "b")
    sb = Stream(b, Hostinfo={"Hostname": "b"}, Endpoints=["192.0.2.2:1"])
    fb = await sb.wait(lambda m: "Node" in m)
    bid = fb["Node"]["ID"]
    await sa.wait(lambda m: any(p["ID"] == bid for p in m.get("PeersChanged", [])))
    assert await b.lite_update(Endpoints=["198.51.100.7:41641"]) == 200
    await sa.wait(lambda m: any(p.get("NodeID") == bid and p.get("Endpoints") == ["198.51.100.7:41641"]
                                for p in m.get("PeersChangedPatch", [])))
    await server.state.rename_node(bid, "renamed")
    await sa.wait(lambda m: any(p["ID"] == bid and p["Name"].startswith("renamed.") for p in m.get("PeersChanged", [])))
    await server.state.delete_node(bid)
    await sa.wait(lambda m: bid in m.get("PeersRemoved", []))
    for s in (sa, sb):
        await s.close()
    for c in (a, b):
        await c.close()
