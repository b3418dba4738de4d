"""supervisord mechanics with a stand-in server: shutdown order, FATAL -> exit 1, Litestream off."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import urllib.request

from tests.entrypoint.conftest import (
    VENV_BIN,
    appliance_env,
    assert_replica_encrypted,
    bucket_objects,
    restore_copy,
)


def write(appliance, value: str) -> None:
    req = urllib.request.Request(f"{appliance.listen}/write?value={value}", method="POST")
    urllib.request.urlopen(req, timeout=5).read()


def supervisorctl(appliance, *args: str) -> str:
    conf = appliance.root / "etc/headscale/supervisord.conf"
    proc = subprocess.run([str(VENV_BIN / "supervisorctl"), "-c", str(conf), *args],
                          check=False, capture_output=True, text=True, timeout=30)
    return proc.stdout


def rows(db) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        return [r[0] for r in conn.execute("SELECT value FROM events ORDER BY id")]
    finally:
        conn.close()


def test_sigterm_stops_server_then_litestream_and_the_last_write_is_replicated(
        appliances, root, moto_endpoint, bucket, s3, age_key, standin_bin, tmp_path):
    env = appliance_env(root, moto_endpoint, bucket, age_key, path_first=standin_bin)
    a = appliances(env)
    a.wait_healthy()
    for i in range(5):
        write(a, f"row-{i}")
    assert a.stop(signal.SIGTERM) == 0
    out = a.output
    assert out.index("stopped: server") < out.index("stopped: litestream"), out
    restored = rows(restore_copy(env, tmp_path / "copy.sqlite"))
    assert restored[-6:] == [f"row-{i}" for i in range(5)] + ["shutdown"]
    assert_replica_encrypted(s3, bucket)


def test_litestream_disabled_runs_only_the_server_and_warns(appliances, root, moto_endpoint, bucket, s3,
                                                            standin_bin):
    env = appliance_env(root, moto_endpoint, bucket, "", path_first=standin_bin, LITESTREAM_ENABLED="false")
    for name in ("AGE_SECRET_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION",
                 "AWS_ENDPOINT_URL_S3", "BUCKET_NAME"):
        env.pop(name)
    a = appliances(env)
    a.wait_healthy()
    status = supervisorctl(a, "status")
    assert "server" in status and "litestream" not in status
    assert "database is NOT replicated" in a.output
    assert a.stop(signal.SIGINT) == 0
    assert bucket_objects(s3, bucket) == {}
