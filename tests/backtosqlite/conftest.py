"""A real PostgreSQL server for the converter tests, started in a temporary directory.

PostgreSQL refuses to run as root: as root the cluster is run as the `postgres` user of the
apt package (via runuser); otherwise as the current user. It listens on 127.0.0.1 only, on a
free port, with password (scram) authentication over TCP.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

PG_BIN_CANDIDATES = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def _pg_bin(name: str) -> str:
    for d in PG_BIN_CANDIDATES:
        if (d / name).exists():
            return str(d / name)
    found = shutil.which(name)
    if not found:
        pytest.skip(f"PostgreSQL's {name} is not installed (make apt)")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="pg-", dir="/tmp"))
        self.data = self.dir / "data"
        self.port = _free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            runuser = shutil.which("runuser")
            if runuser is None:
                pytest.skip("running as root without runuser: cannot start PostgreSQL")
            self.as_user = [runuser, "-u", "postgres", "--"]
            shutil.chown(self.dir, "postgres", "postgres")
        os.chmod(self.dir, 0o700)
        self.admin_password = "admin-pw"

    def run(self, *argv: str, input: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([*self.as_user, *argv], input=input, capture_output=True, text=True,
                              check=True, timeout=120, cwd=str(self.dir))

    def start(self) -> None:
        pwfile = self.dir / "pw"
        pwfile.write_text(self.admin_password + "\n")
        if self.as_user:
            shutil.chown(pwfile, "postgres", "postgres")
        self.run(_pg_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--pwfile", str(pwfile),
                 "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8")
        pwfile.unlink()
        opts = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir} -c fsync=off"
        self.run(_pg_bin("pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(self.dir / "log"), "-w", "start")

    def psql(self, sql: str, db: str = "postgres") -> str:
        return self.run(_pg_bin("psql"), "-h", str(self.dir), "-p", str(self.port), "-U", "postgres", "-d", db,
                        "-v", "ON_ERROR_STOP=1", "-q", "-At", input=sql).stdout

    def stop(self) -> None:
        try:
            self.run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres():
    cluster = Cluster()
    cluster.start()
    yield cluster
    cluster.stop()
