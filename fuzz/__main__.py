"""Fuzz every target for a while and report inputs run, inputs/s and findings per target.

    python -m fuzz [--seconds 600] [--targets a,b] [--workdir DIR] [--json FILE]

Each target runs in its own process (``python -m fuzz.run``) with libFuzzer's corpus in
``--workdir/<target>`` (grown across runs) plus the committed seeds and regressions. A crash
leaves its input as ``--workdir/<target>/crash-*``: fix the bug, then copy the input into
fuzz/regressions/<target>/ so every test run replays it. Exit status 1 if any target crashed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def run_target(name: str, seconds: int, workdir: Path) -> dict:
    corpus = workdir / name / "corpus"
    artifacts = workdir / name
    corpus.mkdir(parents=True, exist_ok=True)
    dirs = [str(corpus)] + [str(d) for d in (HERE / "corpus" / name, HERE / "regressions" / name) if d.is_dir()]
    cmd = [sys.executable, "-m", "fuzz.run", name, f"-max_total_time={seconds}", "-print_final_stats=1",
           "-timeout=10", "-rss_limit_mb=2048", "-max_len=65536", f"-artifact_prefix={artifacts}/", *dirs]
    old = {p.name for p in artifacts.glob("crash-*")} | {p.name for p in artifacts.glob("timeout-*")}
    started = time.monotonic()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, check=False, cwd=REPO, env=env, capture_output=True, text=True, errors="replace",
                          timeout=seconds + 300)
    elapsed = time.monotonic() - started
    log = proc.stderr
    (artifacts / "last.log").write_text(log[-200_000:])
    stats = {k: int(v) for k, v in re.findall(r"stat::(\w+):\s+(\d+)", log)}
    crashes = sorted(str(p) for pattern in ("crash-*", "timeout-*") for p in artifacts.glob(pattern)
                     if p.name not in old)  # this run's findings only
    found = proc.returncode != 0
    return {
        "target": name,
        "seconds": round(elapsed, 1),
        "inputs": stats.get("number_of_executed_units", 0),
        "inputs_per_second": stats.get("average_exec_per_sec", 0),
        "corpus": len(list(corpus.iterdir())),
        "exit": proc.returncode,
        "finding": found,
        "artifacts": crashes,
        "log": str(artifacts / "last.log"),
        "summary": _finding_summary(log) if found else "",
    }


def _finding_summary(log: str) -> str:
    m = re.search(r"=== Uncaught Python exception: ===\n(.*?)(?:\n==|\nMS:|\Z)", log, re.DOTALL)
    return (m.group(1) if m else log[-1500:]).strip()[-1500:]


def main(argv: list[str] | None = None) -> int:
    from fuzz.targets import TARGETS

    ap = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=int(os.environ.get("FUZZ_SECONDS", "600")))
    ap.add_argument("--targets", default=os.environ.get("FUZZ_TARGETS", ""), help="comma list (default: all)")
    ap.add_argument("--workdir", type=Path, default=Path(os.environ.get("FUZZ_WORKDIR", "/var/tmp/pyheadscale-fuzz")))
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args(argv)
    names = [n for n in args.targets.split(",") if n] or list(TARGETS)
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        ap.error(f"unknown target(s) {', '.join(unknown)}; known: {', '.join(TARGETS)}")
    results = []
    print(f"{'target':20} {'seconds':>8} {'inputs':>10} {'inputs/s':>9} {'corpus':>7}  result", flush=True)
    for name in names:
        r = run_target(name, args.seconds, args.workdir)
        results.append(r)
        verdict = "FINDING " + ", ".join(r["artifacts"]) if r["finding"] else "ok"
        print(f"{name:20} {r['seconds']:8.1f} {r['inputs']:10d} {r['inputs_per_second']:9d} {r['corpus']:7d}  {verdict}",
              flush=True)
        if r["finding"]:
            print("  " + r["summary"].replace("\n", "\n  "), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"seconds_per_target": args.seconds, "targets": results}, indent=2))
    return 1 if any(r["finding"] for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
