"""The image recipe: hadolint-clean, build context, the contract the README relies on.

The pinned dependencies it installs are checked in tests/entrypoint/test_locks.py.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def test_dockerfile_is_hadolint_clean():
    proc = subprocess.run([str(VENV_BIN / "hadolint"), "--no-color", str(REPO / "Dockerfile")],
                          check=False, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "", proc.stdout + proc.stderr


def test_build_context_holds_everything_the_dockerfile_copies():
    dockerfile = (REPO / "Dockerfile").read_text()
    allowed = [line[1:].rstrip("/") for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.startswith("!")]
    sources = []
    for line in dockerfile.splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            sources += shlex.split(line)[1:-1]
    assert sources
    for src in sources:
        assert (REPO / src).exists(), src
        assert any(src == a or src.startswith(a + "/") for a in allowed), f"{src} is excluded by .dockerignore"


def test_image_contract():
    """What the README and fly.example.toml rely on."""
    text = (REPO / "Dockerfile").read_text()
    assert re.search(r"^USER 10001:10001$", text, re.MULTILINE)
    assert 'ENTRYPOINT ["python", "-m", "entrypoint"]' in text
    assert "entrypoint.healthcheck" in text and "HEALTHCHECK" in text
    assert "ln -s /opt/headscale/bin/headscale /usr/local/bin/headscale" in text
    assert "/usr/share/headscale/config-templates" in text
    from entrypoint.render import TEMPLATE_DIRS

    assert Path("/usr/share/headscale/config-templates") in TEMPLATE_DIRS


def test_healthcheck_targets_the_listener():
    from entrypoint.healthcheck import url

    assert url({}) == "http://127.0.0.1:8080/health"
    assert url({"HEADSCALE_LISTEN_ADDR": "127.0.0.1:9999"}) == "http://127.0.0.1:9999/health"


def test_fly_example_toml_matches_the_appliance():
    import configparser
    import tomllib

    from entrypoint.env import BY_NAME

    fly = tomllib.loads((REPO / "fly.example.toml").read_text())
    http_port = int(BY_NAME["HEADSCALE_LISTEN_ADDR"].default.rsplit(":", 1)[1])
    metrics_port = int(BY_NAME["HEADSCALE_METRICS_LISTEN_ADDR"].default.rsplit(":", 1)[1])
    assert fly["http_service"]["internal_port"] == http_port
    assert fly["http_service"]["checks"][0]["path"] == "/health"
    assert fly["metrics"] == {"port": metrics_port, "path": "/metrics"}
    assert BY_NAME["HEADSCALE_METRICS_LISTEN_ADDR"].default.startswith("0.0.0.0:")  # Fly scrapes on 0.0.0.0
    assert fly["kill_signal"] == "SIGTERM" and fly["deploy"]["strategy"] == "immediate"
    assert fly["vm"][0]["size"] == "shared-cpu-1x"
    assert "services" not in fly  # nothing but the HTTP service is public
    text = (REPO / "fly.example.toml").read_text()
    assert '#   protocol = "udp"' in text and "#     port = 3478" in text
    # supervisord's stop budget (server, then Litestream) fits in Fly's kill_timeout
    conf = configparser.ConfigParser(interpolation=None)
    conf.read_string((REPO / "tests/entrypoint/expected/fly-defaults/supervisord.conf").read_text())
    budget = sum(int(conf[s]["stopwaitsecs"]) for s in ("program:server", "program:litestream"))
    assert budget + 2 <= fly["kill_timeout"]
