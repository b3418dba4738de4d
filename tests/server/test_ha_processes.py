"""Two real `headscale serve` processes on one real PostgreSQL: one active, one standby that
refuses everything with 503; killing the active's lock session deposes it (exit 75) and the
standby takes over without any write of the old epoch after the new one began; SIGTERM to the
active one (a deploy) hands over at once."""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psycopg
import pytest
import yaml

HEADSCALE = str(Path(sys.executable).parent / "headscale")
TAKEOVER_LIMIT = 10.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    def __init__(self, work: Path, name: str, pg: dict) -> None:
        self.dir = work / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port, self.mport = free_port(), free_port()
        self.cfg = self.dir / "config.yaml"
        self.cfg.write_text(yaml.safe_dump({
            "server_url": "https://hs.example.com", "listen_addr": f"127.0.0.1:{self.port}",
            "metrics_listen_addr": f"127.0.0.1:{self.mport}",
            "noise": {"private_key_path": str(work / "noise.key")},
            "database": {"type": "postgres", "postgres": pg},
            "unix_socket": str(self.dir / "hs.sock"), "policy": {"mode": "database"},
            "dns": {"base_domain": "tailnet.test", "override_local_dns": False},
            "derp": {"urls": [], "server": {"enabled": False}},
            "log": {"level": "info"}}))
        self.log = self.dir / "server.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        out = open(self.log, "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen([HEADSCALE, "serve", "-c", str(self.cfg)], stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))

    def health(self) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except OSError:
            return 0

    def request(self, path: str, method: str = "GET", headers: dict | None = None) -> tuple[int, bytes]:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=3) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.mport}/metrics", timeout=3) as r:
            return r.read().decode()

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([HEADSCALE, "-c", str(self.cfg), *args], capture_output=True, text=True, timeout=30,
                              check=False)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def lease_backend_pids(url: str) -> list[int]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT l.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                            " WHERE l.locktype = 'advisory' AND l.granted"
                            " AND a.application_name = 'headscale-ha-lease'").fetchall()
    return [r[0] for r in rows]


def epoch_rows(url: str) -> list[tuple]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute("SELECT epoch, holder, started_at, writes, last_write_at FROM pyheadscale_ha_epochs"
                            " ORDER BY epoch").fetchall()


def assert_no_overlapping_writes(url: str) -> None:
    rows = epoch_rows(url)
    for older, newer in itertools.pairwise(rows):
        if older[4] is not None:
            assert older[4] < newer[2], f"epoch {older[0]} wrote at {older[4]}, after epoch {newer[0]} began"


@pytest.mark.timeout(120)
def test_standby_refuses_and_takes_over_when_the_active_loses_its_database(postgres, tmp_path):
    name = postgres.create_database("ha")
    url = postgres.url(name)
    pg = {"host": "127.0.0.1", "port": postgres.port, "name": name, "user": "postgres",
          "pass": postgres.admin_password, "max_open_conns": 3, "max_idle_conns": 1}
    a, b = Proc(tmp_path, "a", pg), Proc(tmp_path, "b", pg)
    try:
        a.start()
        wait_until(lambda: a.health() == 200, 30, "a active")
        b.start()
        wait_until(lambda: "waiting for the lease" in b.log.read_text(), 30, "b standing by")
        assert b.health() == 503
        assert 'headscale_ha_role{role="standby"} 1.0' in b.metrics()
        assert 'headscale_ha_role{role="active"} 1.0' in a.metrics()

        # Everything on the standby is refused, so a proxy sends it to the active server.
        status, body = b.request("/ts2021", "POST", {"Upgrade": "tailscale-control-protocol", "Connection": "upgrade"})
        assert status == 503 and b"standby" in body
        assert b.request("/derp", "GET", {"Upgrade": "DERP", "Connection": "Upgrade"})[0] == 503
        status, body = b.request("/api/v1/node", "GET", {"Authorization": "Bearer hskey-api-x"})
        assert status == 503 and json.loads(body)["message"].startswith("this server is a standby")
        refused = b.cli("users", "list")
        assert refused.returncode == 1 and "standby" in refused.stderr

        assert a.cli("users", "create", "alice").returncode == 0
        key = json.loads(a.cli("preauthkeys", "create", "-u", "1", "--reusable", "-o", "json").stdout)["key"]

        # A network partition between a and PostgreSQL, as PostgreSQL sees it: its lock session ends.
        (pid,) = lease_backend_pids(url)
        killed_at = time.monotonic()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        wait_until(lambda: b.health() == 200, TAKEOVER_LIMIT, "b active")
        takeover = time.monotonic() - killed_at
        assert wait_until(lambda: a.proc.poll() is not None, 10, "a exits") and a.proc.returncode == 75
        assert "deposed" in a.log.read_text()
        print(f"takeover after the lock session was killed: {takeover:.2f} s")

        # b loaded everything from the database: the user and the key a created.
        users = json.loads(b.cli("users", "list", "-o", "json").stdout)
        assert [u["name"] for u in users] == ["alice"]
        assert b.cli("users", "create", "bob").returncode == 0
        assert 'headscale_ha_role{role="active"} 1.0' in b.metrics()
        assert key

        # a comes back as a standby; b stays active.
        offset = len(a.log.read_text())
        a.start()
        wait_until(lambda: "waiting for the lease" in a.log.read_text()[offset:], 30, "a standby")
        assert a.health() == 503 and b.health() == 200
        rows = epoch_rows(url)
        assert [r[0] for r in rows] == [1, 2] and rows[0][3] > 0 and rows[1][3] > 0
        assert_no_overlapping_writes(url)

        # A deploy or scale-down: SIGTERM to the active one hands over at once.
        os.killpg(b.proc.pid, signal.SIGTERM)
        stopped_at = time.monotonic()
        wait_until(lambda: a.health() == 200, TAKEOVER_LIMIT, "a active after b's SIGTERM")
        print(f"handover after SIGTERM: {time.monotonic() - stopped_at:.2f} s")
        assert b.proc.wait(10) == 0
        assert [u["name"] for u in json.loads(a.cli("users", "list", "-o", "json").stdout)] == ["alice", "bob"]
        assert [r[0] for r in epoch_rows(url)] == [1, 2, 3]
        assert_no_overlapping_writes(url)
    finally:
        a.stop()
        b.stop()
        postgres.drop_database(name)
