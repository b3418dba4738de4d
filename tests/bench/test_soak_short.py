"""A short soak (bench/soak.py) in `make test`: 200 nodes, 50 changes/s for 30 s against a real
server. The long one (1,000 nodes, 100/s, 10 minutes) is `make soak`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_short_soak_loses_no_delta_and_leaks_nothing(tmp_path):
    out_json = tmp_path / "soak.json"
    out = subprocess.run(
        [sys.executable, "-m", "bench.soak", "--nodes", "200", "--rate", "50", "--seconds", "30",
         "--warmup", "10", "--sample", "3", "--observers", "50", "--churn", "1", "--rename-every", "1",
         "--rss-tolerance", "15", "--quiesce", "60", "--quiet", "--json", str(out_json)],
        cwd=ROOT, capture_output=True, text=True, timeout=230, check=False,
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    r = json.loads(out_json.read_text())
    assert r["failed"] == []
    # every observer saw every peer; every change acknowledged reached them; nothing broke
    assert r["deltas"]["observers"] == 50 and r["deltas"]["peers"] == 199 and r["deltas"]["lost"] == 0
    assert r["changes"]["acked"] >= 0.9 * 50 * 30 and r["changes"]["failed"] == 0
    assert r["changes"]["renames"] >= 20 and r["changes"]["churned"] >= 20
    assert r["connected_end"] == 200 and r["broken_streams"] == 0
    assert r["quiet"]["sessions"] == 200
    # after every node left, the server is back where it was before they came
    assert r["after"]["sessions"] == 0
    assert r["after"]["fds"] <= r["before"]["fds"] + 20 and r["after"]["tasks"] <= r["before"]["tasks"] + 20
    assert r["server_log_tracebacks"] == 0
    assert "PASS" in out.stdout
