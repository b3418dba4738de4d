"""Two appliances (the real entrypoint, supervisord and server) on one real PostgreSQL through
DATABASE_URL: one serves, the other stands by; SIGTERM to the first (a deploy) and the second
serves the same tailnet. The password reaches the server only through its ~/.pgpass."""

from __future__ import annotations

import shutil
import signal
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.entrypoint.conftest import appliance_env
from tests.entrypoint.test_full_cycle import cli_json


def status(appliance) -> int:
    try:
        with urllib.request.urlopen(appliance.listen + "/health", timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


def test_two_appliances_on_postgres_one_serves_the_other_takes_over(appliances, postgres):
    name = postgres.create_database("appl")
    url = postgres.url(name)
    roots = [Path(tempfile.mkdtemp(prefix="ep-", dir="/tmp")) for _ in range(2)]
    envs = []
    for root in roots:
        env = appliance_env(root, "", "", "", DATABASE_URL=url)
        for key in ("AGE_SECRET_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION",
                    "AWS_ENDPOINT_URL_S3", "BUCKET_NAME", "LITESTREAM_SYNC_INTERVAL", "LITESTREAM_RESTORE_ATTEMPTS"):
            env.pop(key)
        env["HEADSCALE_DERP_SERVER_ENABLED"] = "false"
        env["HEADSCALE_DERP_URLS"] = "https://controlplane.tailscale.com/derpmap/default"
        env["HEADSCALE_DNS_NAMESERVERS_GLOBAL"] = "1.1.1.1"
        envs.append(env)
    first = appliances(envs[0])
    first.wait_healthy()
    assert "database: PostgreSQL postgres@127.0.0.1/" in first.output
    config = (roots[0] / "etc/headscale/config.yaml").read_text()
    assert postgres.admin_password not in config and "type: \"postgres\"" in config
    second = appliances(envs[1])
    second.wait_for("waiting for the lease", 60)
    assert status(second) == 503
    alice = cli_json(first, "users", "create", "alice")

    assert first.stop(signal.SIGTERM) == 0
    stopped = time.monotonic()
    while status(second) != 200:
        assert time.monotonic() - stopped < 10, "the standby did not take over:\n" + second.output
        time.sleep(0.1)
    assert [u["id"] for u in cli_json(second, "users", "list")] == [alice["id"]]
    assert second.stop(signal.SIGTERM) == 0
    postgres.drop_database(name)
    for root in roots:
        shutil.rmtree(root, ignore_errors=True)
