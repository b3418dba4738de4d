"""The control-plane load generator still runs end to end: ~20 nodes, a few seconds."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_control_bench_prints_its_figures():
    out = subprocess.run(
        [sys.executable, "-m", "bench.control_bench", "--nodes", "20", "--duration", "0.5", "--changes", "2",
         "--reopen", "3", "--settle", "0.3", "--change-gap", "0.1", "--timeout", "50", "--restart"],
        cwd=ROOT, capture_output=True, text=True, timeout=55, check=False,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    text = out.stdout
    assert "registration: 20 ok, 0 failed" in text, text
    assert "nodes connected: 20 (streaming map sessions open at the end: 20)" in text, text
    assert re.search(r"ramp: .*first full map p50 [\d.]+ ms, p99 [\d.]+ ms", text), text
    assert re.search(r"first full map, quiet \(3 re-opened.*p50 [\d.]+ ms, p99 [\d.]+ ms", text), text
    assert re.search(r"full map size: [\d.]+ KiB zstd, [\d.]+ KiB JSON, 19 peers", text), text
    m = re.search(r"change propagation \(2 changes x 19 receivers\): p50 ([\d.]+) ms, p99 ([\d.]+) ms.*"
                  r"missing 0; arrived as \{'patch': 38\}", text)
    assert m, text
    assert re.search(r"end +RSS +[\d.]+ MiB +CPU +[\d.]+ s", text), text
    assert re.search(r"GET /api/v1/node over 20 nodes: [\d.]+ ms; `headscale nodes list`: [\d.]+ ms \(exit 0, "
                     r"\d+ lines\)", text), text
    # every node reconnects to the restarted server and gets its first full map again
    assert re.search(r"restart storm: 20 of 20 nodes had their first full map [\d.]+ s after the server started",
                     text), text


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_control_bench_only_register():
    """--only-register: registration and the admin API listing, no map streams."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.control_bench", "--nodes", "20", "--only-register", "--timeout", "50"],
        cwd=ROOT, capture_output=True, text=True, timeout=55, check=False,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    text = out.stdout
    assert re.search(r"registration: 20 ok, 0 failed in [\d.]+ s \([\d.]+/s", text), text
    assert re.search(r"GET /api/v1/node over 20 nodes: [\d.]+ ms; `headscale nodes list`: [\d.]+ ms \(exit 0, "
                     r"41 lines\)", text), text
    assert "ramp:" not in text and "change propagation" not in text, text
