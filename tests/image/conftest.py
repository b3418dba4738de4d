"""The appliance image as built: one build per test session (layers and base cached in
/var/tmp/pyheadscale-podman between runs), containers on the host network with loopback addresses,
moto_server as S3."""

from __future__ import annotations

import json
import os
import uuid

import pytest

from tests.entrypoint.conftest import age_key, bucket, moto_endpoint, s3  # noqa: F401 - fixtures reused
from tests.image import podman

REPO = podman.REPO


@pytest.fixture(scope="session")
def image() -> dict:
    missing = podman.tools_missing()
    assert not missing, f"missing {missing}: `make apt` installs podman, buildah, runc and debootstrap"
    figures = podman.build_image()
    out = REPO / "tests" / ".artifacts"
    out.mkdir(parents=True, exist_ok=True)
    (out / "image.json").write_text(json.dumps(figures, indent=2))
    print(f"\nimage: {figures}")
    return figures


@pytest.fixture
def containers(image):
    """`containers(args, env, volumes)` starts one; all are removed at the end of the test."""
    started: list[podman.Container] = []

    def start(args: list[str] | None = None, env: dict | None = None, volumes: list[str] = ()) -> podman.Container:
        c = podman.Container(f"hs-test-{uuid.uuid4().hex[:8]}", list(args or []), dict(env or {}), list(volumes))
        started.append(c)
        return c

    yield start
    for c in started:
        if os.environ.get("KEEP_CONTAINERS"):
            continue
        c.remove()
