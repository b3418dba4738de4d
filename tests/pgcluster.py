"""A real PostgreSQL server for the tests (store on both engines, engine moves, HA), started
once per session in a temporary directory (fixture ``postgres`` in tests/conftest.py).

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
import uuid
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
        self.host = "127.0.0.1"
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


    def url(self, db: str, user: str = "postgres", password: str | None = None) -> str:
        pw = self.admin_password if password is None else password
        return f"postgresql://{user}:{pw}@127.0.0.1:{self.port}/{db}"

    def admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(sql)

    def create_database(self, prefix: str = "t", template: str | None = None) -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        self.admin(f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else ""))
        return name

    def drop_database(self, name: str) -> None:
        self.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def migrated_template(self) -> str:
        """A database migrated once per session; copies of it are fresh migrated databases."""
        if not getattr(self, "_template", None):
            from app.store.migrate import migrate_postgres

            name = self.create_database("template")
            migrate_postgres(self.url(name))
            self._template = name
        return self._template
