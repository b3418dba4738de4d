"""Where the appliance keeps things, and which programs it runs.

Every path is under ENTRYPOINT_ROOT (default `/`), so tests run the whole boot in a temporary
directory. The rendered server config sits at `/etc/headscale/config.yaml`, the `headscale`
CLI's default search path, so `fly ssh console -C "headscale users list"` needs no flags.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

REPLICA_PATH = "headscale.db"  # object prefix in the bucket (same as the upstream appliance)
IMPORT_OBJECT = "import-db.sqlite"
IMPORT_MARKER = "import-db.sqlite.imported"


@dataclass(frozen=True)
class Paths:
    root: Path

    @classmethod
    def under(cls, root: str | Path) -> Paths:
        return cls(Path(root))

    def _p(self, rel: str) -> Path:
        return self.root / rel

    @property
    def config_dir(self) -> Path:
        return self._p("etc/headscale")

    @property
    def config(self) -> Path:
        return self.config_dir / "config.yaml"

    @property
    def litestream_config(self) -> Path:
        return self.config_dir / "litestream.yml"

    @property
    def supervisord_config(self) -> Path:
        return self.config_dir / "supervisord.conf"

    @property
    def data_dir(self) -> Path:
        return self._p("var/lib/headscale")

    @property
    def db(self) -> Path:
        return self.data_dir / "db.sqlite"

    @property
    def noise_key(self) -> Path:
        return self.data_dir / "noise_private.key"

    @property
    def derp_key(self) -> Path:
        return self.data_dir / "derp_server_private.key"

    @property
    def oidc_secret(self) -> Path:
        return self.data_dir / "oidc_client_secret"

    @property
    def litestream_meta(self) -> Path:
        """Litestream's local bookkeeping directory for the database."""
        return self.data_dir / ".db.sqlite-litestream"

    @property
    def run_dir(self) -> Path:
        return self._p("var/run/headscale")

    @property
    def unix_socket(self) -> Path:
        return self.run_dir / "headscale.sock"

    @property
    def supervisor_socket(self) -> Path:
        return self.run_dir / "supervisor.sock"

    @property
    def supervisor_pidfile(self) -> Path:
        return self.run_dir / "supervisord.pid"

    @property
    def fatal_flag(self) -> Path:
        """Written by the FATAL listener; its presence makes the entrypoint exit non-zero."""
        return self.run_dir / "fatal"

    def directories(self) -> list[Path]:
        return [self.config_dir, self.data_dir, self.run_dir]


@dataclass(frozen=True)
class Tools:
    """Absolute paths of the programs supervisord starts."""

    python: str
    server: tuple[str, ...]  # argv prefix of the control server ("headscale")
    litestream: str
    supervisord: str

    @classmethod
    def find(cls) -> Tools:
        return cls(
            python=sys.executable,
            server=_server_argv(),
            litestream=_which("litestream"),
            supervisord=_which("supervisord"),
        )


def _which(name: str) -> str:
    """PATH first (lets tests put a stand-in in front), then next to the running interpreter."""
    found = shutil.which(name)
    if found:
        return found
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else name


def _server_argv() -> tuple[str, ...]:
    found = shutil.which("headscale") or str(Path(sys.executable).parent / "headscale")
    if Path(found).exists():
        return (found,)
    return (sys.executable, "-m", "app")
