"""Build and run the appliance image here with Debian's podman/buildah (APPLIANCE.md §7).

There is no Docker daemon and no registry on these machines: the base image is made with
debootstrap (Debian bookworm + Python 3.11, like python:3.11-slim-bookworm) and cached, then the
project's Dockerfile is built unchanged on top of it with `--build-arg PYTHON_IMAGE=...`.
Storage, runtime config and temp files live in STATE (kept between runs, so a rebuild after a
code change reuses the base and the pinned-dependency layer).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
STATE = Path(os.environ.get("PYHEADSCALE_PODMAN_DIR", "/var/tmp/pyheadscale-podman"))
BASE = "localhost/py311-bookworm"
IMAGE = "localhost/pyheadscale:test"
BASE_PACKAGES = "python3.11,python3.11-venv,python3-pip,python-is-python3,ca-certificates"
HOST_CA = "/etc/ssl/certs/ca-certificates.crt"


def tools_missing() -> list[str]:
    return [t for t in ("podman", "buildah", "debootstrap", "runc") if shutil.which(t) is None]


def environ() -> dict[str, str]:
    """podman's environment: private storage (graphroot/runroot), runc + cgroupfs, ulimits root may set."""
    STATE.mkdir(parents=True, exist_ok=True)
    (STATE / "tmp").mkdir(exist_ok=True)
    storage = STATE / "storage.conf"
    storage.write_text(f'[storage]\ndriver = "overlay"\ngraphroot = "{STATE}/graph"\nrunroot = "{STATE}/run"\n')
    conf = STATE / "containers.conf"
    conf.write_text('[containers]\ndefault_ulimits = ["nofile=20000:20000", "nproc=20000:20000"]\n'
                    '[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n')
    return {**os.environ, "CONTAINERS_STORAGE_CONF": str(storage), "CONTAINERS_CONF": str(conf),
            "TMPDIR": str(STATE / "tmp")}


def podman(*args: str, check: bool = True, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(["podman", *args], env=environ(), capture_output=True, text=True, timeout=timeout,
                          check=False, **kw)
    if check and proc.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def debian_mirror() -> str:
    """The machine's own Debian mirror (its apt sources), so debootstrap goes where apt goes."""
    texts = [p.read_text() for p in Path("/etc/apt/sources.list.d").glob("*.sources")]
    for text in texts:
        for block in text.split("\n\n"):
            if re.search(r"^Suites:.*\bbookworm\b", block, re.MULTILINE) and "security" not in block:
                m = re.search(r"^URIs:\s*(\S+)", block, re.MULTILINE)
                if m:
                    return m.group(1)
    legacy = Path("/etc/apt/sources.list")
    if legacy.exists():
        m = re.search(r"^deb\s+(\S+)\s+bookworm\s", legacy.read_text(), re.MULTILINE)
        if m:
            return m.group(1)
    return "http://deb.debian.org/debian"


def ensure_base() -> float:
    """The debootstrapped base image, made once and cached; returns seconds spent (0 if cached)."""
    if podman("image", "exists", BASE, check=False).returncode == 0:
        return 0.0
    started = time.monotonic()
    rootfs = STATE / "rootfs"
    shutil.rmtree(rootfs, ignore_errors=True)
    subprocess.run(["debootstrap", "--variant=minbase", f"--include={BASE_PACKAGES}", "bookworm", str(rootfs),
                    debian_mirror()], check=True, capture_output=True, timeout=900)
    # apt's caches and package lists (about 100 MB) are not part of a slim Python base
    for pattern in ("var/cache/apt/archives/*.deb", "var/cache/apt/*.bin", "var/lib/apt/lists/*_*"):
        for path in rootfs.glob(pattern):
            path.unlink()
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    subprocess.run(["podman", "import", "--change", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "--change", "ENV LANG=C.UTF-8", "-", BASE], stdin=tar.stdout, env=environ(), check=True,
                   capture_output=True, timeout=600)
    tar.wait(timeout=60)
    shutil.rmtree(rootfs, ignore_errors=True)
    return time.monotonic() - started


def build_image() -> dict:
    """Build the Dockerfile as it is (layers cached); returns timings and sizes."""
    base_seconds = ensure_base()
    started = time.monotonic()
    cmd = ["buildah", "bud", "--format", "docker", "--layers", "--force-rm", "--network", "host",
           "--build-arg", f"PYTHON_IMAGE={BASE}", "-t", IMAGE]
    if Path(HOST_CA).exists():  # downloads during RUN pass through a TLS-re-signing proxy here
        cmd += ["-v", f"{HOST_CA}:{HOST_CA}:ro"]
    proc = subprocess.run([*cmd, str(REPO)], env=environ(), capture_output=True, text=True, timeout=1200,
                          check=False)
    if proc.returncode == 0:  # layers of builds older than a week: disk stays bounded, recent cache stays
        podman("image", "prune", "-f", "--filter", "until=168h", check=False, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"image build failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}")
    return {"base_seconds": round(base_seconds, 1), "build_seconds": round(time.monotonic() - started, 1),
            **image_sizes()}


def image_sizes() -> dict:
    """Whole image and the app layers alone (everything above the base), in bytes."""
    info = json.loads(podman("image", "inspect", IMAGE).stdout)[0]
    base = json.loads(podman("image", "inspect", BASE).stdout)[0]
    return {"image_bytes": info["Size"], "base_bytes": base["Size"], "app_bytes": info["Size"] - base["Size"]}


class Container:
    """One `podman run -d --network host` of the image; logs and exit status on demand."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], volumes: list[str] = ()) -> None:
        self.name = name
        cmd = ["run", "-d", "--name", name, "--network", "host", "--no-healthcheck"]
        for key, value in env.items():
            cmd += ["-e", f"{key}={value}"]
        for v in volumes:
            cmd += ["-v", v]
        podman("rm", "-f", name, check=False)
        podman(*cmd, IMAGE, *args)

    def logs(self) -> str:
        p = podman("logs", self.name, check=False)
        return p.stdout + p.stderr

    def exec(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return podman("exec", self.name, *args, check=check, timeout=60)

    def running(self) -> bool:
        p = podman("inspect", "-f", "{{.State.Running}}", self.name, check=False)
        return p.stdout.strip() == "true"

    def stop(self, signal: str = "TERM", timeout: float = 60) -> int:
        """Send the signal (as Fly does) and wait: the container's exit status."""
        if self.running():
            podman("kill", "--signal", signal, self.name, check=False)
        p = podman("wait", self.name, timeout=timeout, check=False)
        try:
            return int(p.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return -1

    def remove(self) -> None:
        podman("rm", "-f", self.name, check=False, timeout=60)
