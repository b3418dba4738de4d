"""Crash campaign: `kill -9` the server at random moments while it takes writes.

    python -m tests.crash_campaign [--mutations 1000] [--kills 100] [--seed N] [--dir DIR]

A `headscale serve` process (tests/procserver.py) takes mutations from a few concurrent
workers: users created over the API and with the CLI, pre-auth keys, policy sets, node
registrations over Noise and map updates (new endpoints) from registered nodes. A write counts
as *acknowledged* when the server answered success. At a random moment (after a random number
of acknowledgements, plus a random few milliseconds so other writes are in flight) the server
gets SIGKILL. Then, before it restarts:

- `PRAGMA integrity_check` is ok;
- every acknowledged write is in the database (users, key prefixes, node keys; for policies and
  endpoints, which are overwritten, the stored value is the last acknowledged one or a later one).

After the restart, a few registered nodes reconnect with their old keys and are served a map
without registering again. The last round ends with a clean stop and the same checks.
``make soak`` runs the long campaign; tests/server/test_crash_campaign.py a short one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

from app.client.control import ControlClient, fetch_key
from tests.procserver import ServerProc

MUTATION_TIMEOUT = 15.0
KINDS = {"api_user": 25, "api_preauthkey": 15, "api_policy": 10, "registration": 20, "map_update": 28,
         "cli_user": 2}


@dataclass
class Ledger:
    users: set[str] = field(default_factory=set)
    prefixes: set[str] = field(default_factory=set)
    node_keys: set[str] = field(default_factory=set)
    endpoints: dict[str, int] = field(default_factory=dict)   # node key -> last acked marker
    policy: int = -1                                           # last acked policy marker
    counts: dict[str, int] = field(default_factory=dict)
    attempted: int = 0

    def ack(self, kind: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1

    @property
    def acked(self) -> int:
        return sum(self.counts.values())


@dataclass
class Node:
    machine_private: bytes
    node_private: bytes
    disco_private: bytes
    node_key: str
    client: ControlClient | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    marker: int = 0


async def api(sock: str, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    """One request to the admin API over the unix socket (local trust, no API key)."""
    reader, writer = await asyncio.open_unix_connection(sock)
    try:
        raw = json.dumps(body).encode() if body is not None else b""
        writer.write(f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {len(raw)}\r\n\r\n".encode() + raw)
        data = await reader.read()
    finally:
        writer.close()
    head, _, payload = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/1.1 ") else 0
    try:
        return status, json.loads(payload or b"{}")
    except ValueError:
        return status, {}


class Campaign:
    def __init__(self, directory: str, mutations: int, kills: int, seed: int, workers: int = 4,
                 log=None) -> None:
        self.dir = directory
        self.mutations = mutations
        self.kills = kills
        self.rng = random.Random(seed)
        self.workers = workers
        self.log = log
        self.ledger = Ledger()
        self.nodes: list[Node] = []
        self.srv = ServerProc(directory, {"tuning.batch_change_delay": "20ms", "log": {"level": "warn"}})
        self.counter = 0
        self.policy_lock = asyncio.Lock()
        self.server_key: bytes | None = None
        self.auth_key = ""
        self.kill_count = 0
        self.reconnects = 0
        self.verifications = 0

    def _next(self) -> int:
        self.counter += 1
        return self.counter

    # ---- mutations -------------------------------------------------------------------------

    async def _api_user(self) -> None:
        name = f"u{self._next()}"
        status, _ = await api(self.srv.socket_path, "POST", "/api/v1/user", {"name": name})
        if status == 200:
            self.ledger.users.add(name)
            self.ledger.ack("api_user")

    async def _cli_user(self) -> None:
        name = f"c{self._next()}"
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "app.main", "-c", self.srv.config_path, "users", "create", name,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if await proc.wait() == 0:
            self.ledger.users.add(name)
            self.ledger.ack("cli_user")

    async def _api_preauthkey(self) -> None:
        status, body = await api(self.srv.socket_path, "POST", "/api/v1/preauthkey",
                                 {"user": "1", "reusable": True, "expiration": None})
        if status == 200:
            full = body["preAuthKey"]["key"]
            self.ledger.prefixes.add(full[len("hskey-auth-"):][:12])   # positional: may hold "-"
            self.ledger.ack("api_preauthkey")

    async def _api_policy(self) -> None:
        async with self.policy_lock:   # one at a time: "the last acknowledged" is well defined
            n = self._next()
            text = json.dumps({"hosts": {f"m{n}": "10.1.2.3/32"},
                               "acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}]})
            status, _ = await api(self.srv.socket_path, "PUT", "/api/v1/policy", {"policy": text})
            if status == 200:
                self.ledger.policy = n
                self.ledger.ack("api_policy")

    async def _registration(self) -> None:
        from app.core import keys

        node = Node(keys.new_private(), keys.new_private(), keys.new_private(), "")
        c = ControlClient("127.0.0.1", self.srv.port, machine_private=node.machine_private,
                          node_private=node.node_private, disco_private=node.disco_private)
        node.node_key = c.node_key
        await c.connect(self.server_key)
        resp = await c.register(self.auth_key, hostinfo={"Hostname": f"n{self._next()}"})
        if resp.get("MachineAuthorized"):
            node.client = c
            self.nodes.append(node)
            self.ledger.node_keys.add(node.node_key)
            self.ledger.ack("registration")
        else:
            c.writer.close()

    async def _map_update(self) -> None:
        live = [n for n in self.nodes if n.client is not None and not n.client.closed.is_set()]
        if not live:
            return await self._registration()
        node = self.rng.choice(live)
        async with node.lock:     # per node in order: "the last acknowledged" is well defined
            n = self._next()
            status = await node.client.lite_update(Endpoints=[f"192.0.2.1:{n}"])
            if status == 200:
                node.marker = n
                self.ledger.endpoints[node.node_key] = n
                self.ledger.ack("map_update")

    async def _worker(self, stop: asyncio.Event) -> None:
        kinds, weights = zip(*KINDS.items(), strict=True)
        while not stop.is_set():
            kind = self.rng.choices(kinds, weights)[0]
            self.ledger.attempted += 1
            try:
                await asyncio.wait_for(getattr(self, f"_{kind}")(), MUTATION_TIMEOUT)
            except (OSError, ConnectionError, RuntimeError, asyncio.IncompleteReadError, ValueError, KeyError,
                    TimeoutError):
                await asyncio.sleep(0.01)   # the server is gone (or going): not acknowledged

    # ---- rounds ----------------------------------------------------------------------------

    async def _bootstrap(self) -> None:
        status, _ = await api(self.srv.socket_path, "POST", "/api/v1/user", {"name": "crash"})
        assert status == 200, status
        status, body = await api(self.srv.socket_path, "POST", "/api/v1/preauthkey",
                                 {"user": "1", "reusable": True, "expiration": None})
        assert status == 200, (status, body)
        self.auth_key = body["preAuthKey"]["key"]
        self.ledger.users.add("crash")

    async def _round(self, target: int, kill: bool) -> None:
        self.server_key = await fetch_key("127.0.0.1", self.srv.port)
        stop = asyncio.Event()
        start = self.ledger.acked
        tasks = [asyncio.create_task(self._worker(stop)) for _ in range(self.workers)]
        deadline = time.monotonic() + 120
        while self.ledger.acked - start < target and time.monotonic() < deadline:
            await asyncio.sleep(0.002)
        if kill:
            await asyncio.sleep(self.rng.uniform(0, 0.02))   # writes in flight
            self.srv.kill9()
            self.kill_count += 1
        stop.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for n in self.nodes:
            if n.client is not None:
                n.client.writer.close()
                n.client = None
        if not kill:
            self.srv.stop()

    def verify(self) -> None:
        """The database as the killed process left it: intact, every acknowledged write there."""
        self.verifications += 1
        con = sqlite3.connect(self.srv.db_path)
        try:
            assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            users = {r[0] for r in con.execute("SELECT name FROM users WHERE deleted_at IS NULL")}
            missing = self.ledger.users - users
            assert not missing, f"acknowledged users lost: {sorted(missing)[:10]}"
            prefixes = {r[0] for r in con.execute("SELECT prefix FROM pre_auth_keys")}
            missing = self.ledger.prefixes - prefixes
            assert not missing, f"acknowledged pre-auth keys lost: {sorted(missing)[:10]}"
            stored = {r[0]: r[1] for r in con.execute("SELECT node_key, endpoints FROM nodes")}
            missing = self.ledger.node_keys - set(stored)
            assert not missing, f"acknowledged registrations lost: {sorted(missing)[:5]}"
            for key, marker in self.ledger.endpoints.items():
                eps = json.loads(stored[key] or "[]")
                have = max((int(e.rsplit(":", 1)[1]) for e in eps if e.startswith("192.0.2.1:")), default=-1)
                assert have >= marker, f"map update {marker} of {key[:16]} lost (stored {have})"
            if self.ledger.policy >= 0:
                row = con.execute("SELECT data FROM policies WHERE deleted_at IS NULL ORDER BY id DESC LIMIT 1").fetchone()
                hosts = json.loads(row[0]).get("hosts", {}) if row else {}
                have = max((int(h[1:]) for h in hosts if h.startswith("m")), default=-1)
                assert have >= self.ledger.policy, f"policy {self.ledger.policy} lost (stored {have})"
        finally:
            con.close()

    async def _reconnect_some(self) -> None:
        """Registered nodes come back with their old keys, without registering again."""
        for node in self.rng.sample(self.nodes, min(3, len(self.nodes))):
            c = ControlClient("127.0.0.1", self.srv.port, machine_private=node.machine_private,
                              node_private=node.node_private, disco_private=node.disco_private)
            await c.connect(self.server_key)
            status = await c.lite_update()
            assert status == 200, f"node {node.node_key[:16]} not served after restart: {status}"
            node.client = c
            self.reconnects += 1

    async def run(self) -> dict:
        self.srv.start()
        await self._bootstrap()
        rounds = self.kills + 1
        for i in range(rounds):
            left = self.mutations - self.ledger.acked
            per = max(1, left // (rounds - i))
            target = self.rng.randint(max(1, per // 2), max(1, per * 3 // 2)) if i < rounds - 1 else max(1, left)
            await self._round(target, kill=i < rounds - 1)
            self.verify()
            if i < rounds - 1:
                self.srv.start()
                self.server_key = await fetch_key("127.0.0.1", self.srv.port)
                await asyncio.wait_for(self._reconnect_some(), 60)
            if self.log is not None and (i + 1) % 10 == 0:
                self.log(f"  {self.kill_count} kills, {self.ledger.acked} acknowledged writes, all there")
        return self.summary()

    def summary(self) -> dict:
        return {"acknowledged": self.ledger.acked, "attempted": self.ledger.attempted,
                "kills": self.kill_count, "verifications": self.verifications,
                "reconnects": self.reconnects, "by_kind": dict(sorted(self.ledger.counts.items()))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.crash_campaign")
    p.add_argument("--mutations", type=int, default=int(os.environ.get("CRASH_MUTATIONS") or 1000))
    p.add_argument("--kills", type=int, default=int(os.environ.get("CRASH_KILLS") or 100))
    p.add_argument("--seed", type=int, default=int(os.environ.get("CRASH_SEED") or 0) or None)
    p.add_argument("--dir", default=None, help="data directory (default: a new temporary one)")
    args = p.parse_args(argv)
    seed = args.seed or random.SystemRandom().randrange(1, 2**31)
    directory = args.dir or tempfile.mkdtemp(prefix="crash-campaign-")
    print(f"crash campaign: {args.mutations} mutations, {args.kills} kills, seed {seed}, dir {directory}",
          flush=True)
    t0 = time.monotonic()
    campaign = Campaign(directory, args.mutations, args.kills, seed, log=lambda m: print(m, flush=True))
    try:
        result = asyncio.run(campaign.run())
    except AssertionError as exc:
        print(f"FAILED after {campaign.kill_count} kills: {exc}\n{campaign.summary()}", flush=True)
        return 1
    finally:
        campaign.srv.stop()
    print(f"ok in {time.monotonic() - t0:.0f} s: {result}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
