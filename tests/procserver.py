"""`headscale serve -c <config>` in its own process, for tests and benches that measure the
process (descriptors, RSS) or kill it (`kill -9` campaigns).

    srv = ServerProc(tmp_dir, overrides={"tuning.noise_idle_timeout": "2s"}, nofile=300)
    srv.start()            # waits until /health answers
    srv.fds(), srv.rss_kib()
    srv.kill9(); srv.start()   # same data directory, same keys
    srv.stop()
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProc:
    def __init__(self, data_dir: str, overrides: dict | None = None, *, nofile: int | None = None,
                 log_name: str = "server.log", env: dict | None = None) -> None:
        self.extra_env = dict(env or {})
        self.dir = os.path.abspath(data_dir)
        os.makedirs(self.dir, exist_ok=True)
        self.port = free_port()
        self.nofile = nofile
        self.log_path = os.path.join(self.dir, log_name)
        cfg = {
            "server_url": f"http://127.0.0.1:{self.port}",
            "listen_addr": f"127.0.0.1:{self.port}",
            "metrics_listen_addr": "",
            "unix_socket": os.path.join(self.dir, "headscale.sock"),
            "noise": {"private_key_path": os.path.join(self.dir, "noise_private.key")},
            "database": {"type": "sqlite", "sqlite": {"path": os.path.join(self.dir, "db.sqlite")}},
            "derp": {"server": {"enabled": False}, "urls": []},
            "dns": {"magic_dns": True, "base_domain": "tailnet.example", "override_local_dns": False},
            "policy": {"mode": "database"},
            "log": {"level": "info"},
        }
        for key, value in (overrides or {}).items():
            node = cfg
            *parents, last = key.split(".")
            for p in parents:
                node = node.setdefault(p, {})
            node[last] = value
        self.config_path = os.path.join(self.dir, "config.yaml")
        with open(self.config_path, "w", encoding="utf-8") as f:
            yaml.safe_dump(cfg, f)
        self.proc: subprocess.Popen | None = None

    @property
    def db_path(self) -> str:
        return os.path.join(self.dir, "db.sqlite")

    @property
    def socket_path(self) -> str:
        return os.path.join(self.dir, "headscale.sock")

    def start(self, timeout: float = 30.0) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HEADSCALE_")}
        env.update(self.extra_env)
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        # The open-file limit is set inside the child before the server starts (both soft and
        # hard, so the server cannot raise it).
        boot = ("import resource, runpy, sys\n"
                f"n = {int(self.nofile or 0)}\n"
                "if n: resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))\n"
                "sys.argv = ['headscale'] + sys.argv[1:]\n"
                "runpy.run_module('app.main', run_name='__main__')\n")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", boot, "serve", "-c", self.config_path],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=1) as r:
                    if r.status == 200 and os.path.exists(self.socket_path):
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not become healthy: {self.log_tail()}")

    def log_tail(self, n: int = 3000) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()[-n:]
        except OSError:
            return ""

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def rss_kib(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def kill9(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill9()
