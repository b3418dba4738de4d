"""Fuzz targets in every test run: the seeds and every kept crash input replay through each
target, then a short coverage-guided pass of each (`make fuzz` runs the long campaign)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fuzz.targets import TARGETS

REPO = Path(__file__).resolve().parents[2]
FUZZ = REPO / "fuzz"


def inputs_of(name: str) -> list[Path]:
    return sorted(p for sub in ("corpus", "regressions") for p in (FUZZ / sub / name).glob("*") if p.is_file())


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_seeds_and_regressions_replay_cleanly(name):
    target = TARGETS[name]
    one_input = target.setup()
    files = inputs_of(name)
    assert files, f"fuzz/corpus/{name}/ has no seeds: run `python -m fuzz.seeds`"
    for path in files:
        try:
            one_input(path.read_bytes())
        except target.expected:
            pass


def test_short_fuzz_pass_of_every_target(tmp_path):
    seconds = os.environ.get("FUZZ_SHORT_SECONDS", "3")
    out = tmp_path / "fuzz.json"
    proc = subprocess.run([sys.executable, "-m", "fuzz", "--seconds", seconds, "--workdir", str(tmp_path),
                           "--json", str(out)], check=False, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(out.read_text())
    assert {t["target"] for t in report["targets"]} == set(TARGETS)
    for t in report["targets"]:
        assert t["inputs"] > 0, t
