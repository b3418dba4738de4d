"""The image built from the Dockerfile, run the ways people run it: the Fly appliance boot (health,
CLI through `podman exec`, SIGTERM with the final Litestream sync, restore, import once) and
the docker-compose way (a command and the user's own config.yaml)."""

from __future__ import annotations

import json
import socket
import time
import urllib.request
import uuid
from pathlib import Path

from tests.entrypoint.conftest import appliance_env as host_appliance_env
from tests.entrypoint.conftest import free_port
from tests.entrypoint.test_import import DUMPS, counts, database_from_dump
from tests.image import podman


def appliance_env(moto_endpoint: str, bucket: str, age_key: str, **extra: str) -> dict[str, str]:
    """The host tests' appliance environment, less what belongs to the host (paths, PATH, HOME)."""
    env = host_appliance_env(Path("/"), moto_endpoint, bucket, age_key, FLY_APP_NAME="hs-image-test", **extra)
    for host_only in ("PATH", "HOME", "LANG", "ENTRYPOINT_ROOT"):
        env.pop(host_only)
    return env


def wait_healthy(container, listen: str, timeout: float = 90) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            with urllib.request.urlopen(f"http://{listen}/health", timeout=2) as r:
                if r.status == 200:
                    return time.monotonic() - started
        except OSError:
            pass
        if not container.running():
            raise AssertionError("container exited:\n" + container.logs())
        time.sleep(0.2)
    raise AssertionError("never healthy:\n" + container.logs())


def cli_json(container, *args: str):
    proc = container.exec("headscale", *args, "-o", "json")
    return json.loads(proc.stdout)


def test_appliance_boots_answers_the_cli_stops_with_a_final_sync_and_restores(containers, moto_endpoint, bucket,
                                                                             age_key, image):
    env = appliance_env(moto_endpoint, bucket, age_key)
    first = containers(env=env)
    boot = wait_healthy(first, env["HEADSCALE_LISTEN_ADDR"])
    assert first.exec("id", "-u").stdout.strip() == "10001"  # the CLI runs as the service user
    first.exec("headscale", "users", "create", "alice")
    alice = next(u for u in cli_json(first, "users", "list") if u["name"] == "alice")
    key = cli_json(first, "preauthkeys", "create", "-u", str(alice["id"]), "--reusable", "-e", "1h")
    assert key["key"].startswith("hskey-auth-")
    stopped = time.monotonic()
    assert first.stop("TERM") == 0, first.logs()
    stop_seconds = time.monotonic() - stopped
    logs = first.logs()
    assert "stopped: server (exit status 0)" in logs and "stopped: litestream (exit status 0)" in logs, logs

    second = containers(env=env)  # a new container: nothing on its disk but what the bucket restores
    wait_healthy(second, env["HEADSCALE_LISTEN_ADDR"])
    assert "restored" in second.logs()
    assert [u["name"] for u in cli_json(second, "users", "list")] == ["alice"]
    assert [k["id"] for k in cli_json(second, "preauthkeys", "list")] == [key["id"]]
    assert second.stop("TERM") == 0
    print(f"\nboot to /health {boot:.1f}s, SIGTERM to exit {stop_seconds:.1f}s, image {image}")


def test_import_happens_once_in_the_image(containers, moto_endpoint, bucket, s3, age_key, tmp_path):
    source = database_from_dump(DUMPS / "request_tags_migration_test.sql", tmp_path / "import.sqlite")
    s3.upload_file(str(source), bucket, "import-db.sqlite")
    env = appliance_env(moto_endpoint, bucket, age_key, IMPORT_DATABASE="true")
    first = containers(env=env)
    wait_healthy(first, env["HEADSCALE_LISTEN_ADDR"])
    deadline = time.monotonic() + 60
    while "import recorded in s3://" not in first.logs():
        assert time.monotonic() < deadline, first.logs()
        time.sleep(0.5)
    assert len(cli_json(first, "nodes", "list")) == counts(source)["nodes"]
    assert first.stop("TERM") == 0

    second = containers(env=env)
    wait_healthy(second, env["HEADSCALE_LISTEN_ADDR"])
    logs = second.logs()
    assert "was already imported" in logs and "NOT importing it again" in logs and "restored" in logs
    assert len(cli_json(second, "nodes", "list")) == counts(source)["nodes"]
    assert second.stop("TERM") == 0


def test_compose_style_command_with_the_user_s_own_config(containers, tmp_path):
    """As headscale's docker-compose tutorials run it: `serve` with /etc/headscale/config.yaml mounted."""
    listen = f"127.0.0.1:{free_port()}"
    stun = f"127.0.0.1:{free_port(socket.SOCK_DGRAM)}"
    config = tmp_path / "config.yaml"
    config.write_text(f"""
server_url: http://127.0.0.1:8080
listen_addr: {listen}
metrics_listen_addr: 127.0.0.1:{free_port()}
noise:
  private_key_path: /var/lib/headscale/noise_private.key
prefixes:
  v4: 100.64.0.0/10
  v6: fd7a:115c:a1e0::/48
derp:
  server:
    enabled: true
    region_id: 999
    stun_listen_addr: {stun}
  urls: []
database:
  type: sqlite
  sqlite:
    path: /var/lib/headscale/db.sqlite
dns:
  magic_dns: true
  base_domain: example.com
  nameservers:
    global: [1.1.1.1]
unix_socket: /var/run/headscale/headscale.sock
""")
    config.chmod(0o644)
    volume = f"hs-data-{uuid.uuid4().hex[:8]}"
    server = containers(["serve"], volumes=[f"{config}:/etc/headscale/config.yaml:ro",
                                             f"{volume}:/var/lib/headscale"])
    try:
        _compose_checks(server, listen)
    finally:
        server.remove()
        podman.podman("volume", "rm", "-f", volume, check=False)

    # a one-off command, as `docker run --rm ... headscale version`
    once = containers(["version"])
    assert once.stop(timeout=60) == 0
    assert once.logs().strip()


def _compose_checks(server, listen: str) -> None:
    wait_healthy(server, listen)
    assert server.exec("id", "-u").stdout.strip() == "10001"
    server.exec("headscale", "users", "create", "bob")
    assert [u["name"] for u in cli_json(server, "users", "list")] == ["bob"]
    assert "entrypoint:" not in server.logs()  # the appliance boot did not run
    assert server.stop("TERM") == 0
