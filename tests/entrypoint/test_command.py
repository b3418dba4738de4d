"""The container's command mode (docker-compose tutorials): `serve`, `headscale ...`, or any program."""

from __future__ import annotations

import argparse
import subprocess
import sys

from app.cli.main import build_parser
from entrypoint.command import HEADSCALE_COMMANDS, argv_for
from tests.entrypoint.conftest import REPO


def test_the_command_list_is_the_cli_s():
    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(subs.choices) == HEADSCALE_COMMANDS


def test_argv_mapping():
    assert argv_for([]) is None
    assert argv_for(["serve"]) == ["headscale", "serve"]
    assert argv_for(["users", "list"]) == ["headscale", "users", "list"]
    assert argv_for(["-c", "/etc/headscale/config.yaml", "serve"]) == ["headscale", "-c", "/etc/headscale/config.yaml",
                                                                       "serve"]
    assert argv_for(["headscale", "version"]) == ["headscale", "version"]
    assert argv_for(["sh", "-c", "true"]) == ["sh", "-c", "true"]


def test_a_command_replaces_the_boot(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "entrypoint", "sh", "-c", "echo ran; exit 7"], cwd=REPO,
                          capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 7 and proc.stdout == "ran\n"
    proc = subprocess.run([sys.executable, "-m", "entrypoint", "no-such-program-xyz"], cwd=REPO,
                          capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 127 and "cannot run 'no-such-program-xyz'" in proc.stderr
