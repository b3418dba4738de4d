"""Real components for the appliance tests: moto_server on loopback, the real litestream binary,
real supervisord, the entrypoint as a subprocess under a temporary ENTRYPOINT_ROOT."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import boto3
import pyrage
import pytest
from botocore.config import Config

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
HERE = Path(__file__).resolve().parent
AGE_HEADER = b"age-encryption.org/v1\n"
SQLITE_HEADER = b"SQLite format 3\x00"
NOISE_KEY = "privkey:" + "5e" * 32


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def moto_endpoint():
    port = free_port()
    proc = subprocess.Popen([str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(endpoint + "/moto-api/", timeout=1).read()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("moto_server did not start")
            time.sleep(0.1)
    yield endpoint
    proc.terminate()
    proc.wait(timeout=10)


def s3_client(endpoint: str):
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test",
                        aws_secret_access_key="test", config=Config(s3={"addressing_style": "path"}))


@pytest.fixture
def s3(moto_endpoint):
    return s3_client(moto_endpoint)


@pytest.fixture
def bucket(s3) -> str:
    name = f"hs-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def age_key() -> str:
    return str(pyrage.x25519.Identity.generate())


@pytest.fixture(scope="session")
def standin_bin(tmp_path_factory) -> Path:
    """A directory with a `headscale` stand-in (put first on PATH)."""
    d = tmp_path_factory.mktemp("standin-bin")
    script = d / "headscale"
    script.write_text(f"#!/bin/sh\nexec {sys.executable} {HERE / 'standin_server.py'} \"$@\"\n")
    script.chmod(0o755)
    return d


@pytest.fixture
def root() -> Path:
    """A short ENTRYPOINT_ROOT (unix socket paths are limited to 107 bytes)."""
    import shutil
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="ep-", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def appliance_env(root: Path, endpoint: str, bucket: str, age_key: str, path_first: Path | None = None,
                  **extra: str) -> dict[str, str]:
    path = [str(VENV_BIN), "/usr/local/bin", "/usr/bin", "/bin"]
    if path_first is not None:
        path.insert(0, str(path_first))
    env = {
        "PATH": os.pathsep.join(path),
        "HOME": str(root),
        "LANG": "C.UTF-8",
        "ENTRYPOINT_ROOT": str(root),
        "FLY_APP_NAME": "hs-test",
        "HEADSCALE_SERVER_URL": "http://127.0.0.1:8080",
        "HEADSCALE_LISTEN_ADDR": f"127.0.0.1:{free_port()}",
        "HEADSCALE_METRICS_LISTEN_ADDR": f"127.0.0.1:{free_port()}",
        "HEADSCALE_DERP_URLS": "",
        "HEADSCALE_DERP_SERVER_ENABLED": "true",
        "HEADSCALE_DERP_SERVER_STUN_LISTEN_ADDR": f"127.0.0.1:{free_port(socket.SOCK_DGRAM)}",
        "NOISE_PRIVATE_KEY": NOISE_KEY,
        "AGE_SECRET_KEY": age_key,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_S3": endpoint,
        "BUCKET_NAME": bucket,
        "LITESTREAM_SYNC_INTERVAL": "1s",
        "LITESTREAM_RESTORE_ATTEMPTS": "2",
    }
    env.update(extra)
    return env


class Appliance:
    """`python -m entrypoint` as a child process, its output collected line by line."""

    def __init__(self, env: dict[str, str]):
        self.env = env
        self.root = Path(env["ENTRYPOINT_ROOT"])
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self.proc = subprocess.Popen([sys.executable, "-m", "entrypoint"], env=env, cwd=str(self.root),
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.started = time.monotonic()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def output(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 30) -> str:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines:
                    if regex.search(line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"no line matching {pattern!r}; output:\n" + "\n".join(self.lines))
                self._cond.wait(min(left, 0.2))

    @property
    def listen(self) -> str:
        return "http://" + self.env["HEADSCALE_LISTEN_ADDR"]

    def wait_healthy(self, timeout: float = 60) -> float:
        """Seconds from process start until GET /health answered 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"entrypoint exited {self.proc.returncode}:\n{self.output}")
            try:
                with urllib.request.urlopen(self.listen + "/health", timeout=2) as r:
                    if r.status == 200:
                        return time.monotonic() - self.started
            except OSError:  # not listening yet (URLError and HTTPError are OSErrors)
                time.sleep(0.05)
                continue
            time.sleep(0.05)
        raise AssertionError("never healthy:\n" + self.output)

    def wait(self, timeout: float = 60) -> int:
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError("entrypoint did not exit:\n" + self.output) from None
        self._reader.join(timeout=5)
        return rc

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.wait(timeout)

    def kill(self) -> None:
        """Test clean-up: stop the entrypoint and everything it started."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        pidfile = self.root / "var/run/headscale/supervisord.pid"
        if pidfile.exists():
            try:
                os.kill(int(pidfile.read_text()), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass


@pytest.fixture
def appliances():
    """Start appliances with `appliances(env)`; all are stopped at the end of the test."""
    started: list[Appliance] = []

    def start(env: dict[str, str]) -> Appliance:
        a = Appliance(env)
        started.append(a)
        return a

    yield start
    for a in started:
        a.kill()


def bucket_objects(s3, bucket: str) -> dict[str, str]:
    """key -> ETag of every object in the bucket."""
    out: dict[str, str] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            out[obj["Key"]] = obj["ETag"]
    return out


def assert_replica_encrypted(s3, bucket: str, prefix: str = "headscale.db/") -> int:
    keys = [k for k in bucket_objects(s3, bucket) if k.startswith(prefix)]
    assert keys, "the replica is empty"
    for key in keys:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert body.startswith(AGE_HEADER), key
        assert SQLITE_HEADER not in body, key
    return len(keys)


def restore_copy(env: dict[str, str], out: Path) -> Path:
    """Restore the replica into `out` with the real litestream binary (the appliance's config)."""
    root = Path(env["ENTRYPOINT_ROOT"])
    proc = subprocess.run(
        [str(VENV_BIN / "litestream"), "restore", "-config", str(root / "etc/headscale/litestream.yml"),
         "-o", str(out), str(root / "var/lib/headscale/db.sqlite")],
        env=env, check=False, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def wipe_local(root: Path) -> None:
    """What a Fly restart does to the ephemeral rootfs."""
    import shutil

    for child in root.iterdir():
        shutil.rmtree(child) if child.is_dir() else child.unlink()
