"""The appliance end to end with the real control server and CLI, moto, litestream and supervisord."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess

from tests.entrypoint.conftest import (
    VENV_BIN,
    appliance_env,
    assert_replica_encrypted,
    bucket_objects,
    restore_copy,
    wipe_local,
)
from tests.entrypoint.test_import import DUMPS, database_from_dump


def cli(appliance, *args: str, full_env: bool = False) -> str:
    """The CLI as an operator runs it; `full_env`: with every appliance variable and secret set,
    as in `fly ssh console` (the CLI must not trip over HEADSCALE_* names meant for the entrypoint)."""
    config = appliance.root / "etc/headscale/config.yaml"
    env = dict(appliance.env) if full_env else {"PATH": appliance.env["PATH"], "HOME": str(appliance.root)}
    proc = subprocess.run([str(VENV_BIN / "headscale"), "-c", str(config), *args], check=False, capture_output=True,
                          text=True, timeout=30, env=env)
    assert proc.returncode == 0, f"headscale {' '.join(args)}: {proc.stdout}{proc.stderr}"
    return proc.stdout


def cli_json(appliance, *args: str):
    return json.loads(cli(appliance, *args, "-o", "json"))


def test_users_and_keys_survive_a_restart_that_wipes_the_machine(appliances, root, moto_endpoint, bucket, s3,
                                                                  age_key):
    env = appliance_env(root, moto_endpoint, bucket, age_key)
    first = appliances(env)
    first.wait_healthy()
    cli(first, "users", "create", "alice", full_env=True)
    alice = next(u for u in cli_json(first, "users", "list") if u["name"] == "alice")
    key = cli_json(first, "preauthkeys", "create", "-u", alice["id"], "--reusable", "-e", "24h")
    assert key["key"].startswith("hskey-auth-")
    assert first.stop(signal.SIGTERM) == 0
    assert "stopped: server (exit status 0)" in first.output

    wipe_local(root)
    second = appliances(env)
    second.wait_healthy()
    assert "restored" in second.output
    users = cli_json(second, "users", "list")
    assert [(u["id"], u["name"]) for u in users] == [(alice["id"], "alice")]
    keys = cli_json(second, "preauthkeys", "list")
    assert [(k["id"], k["reusable"]) for k in keys] == [(key["id"], True)]
    assert second.stop(signal.SIGTERM) == 0
    assert assert_replica_encrypted(s3, bucket) >= 2
    assert set(bucket_objects(s3, bucket)) == {k for k in bucket_objects(s3, bucket) if k.startswith("headscale.db/")}


def test_a_server_that_cannot_start_again_takes_the_machine_down_and_its_writes_are_replicated(
        appliances, root, moto_endpoint, bucket, age_key, tmp_path):
    env = appliance_env(root, moto_endpoint, bucket, age_key)
    a = appliances(env)
    a.wait_healthy()
    cli(a, "users", "create", "before-crash")
    config = root / "etc/headscale/config.yaml"
    config.write_text(config.read_text().replace("database:", "database: [broken\n"))  # restarts fail
    pid = int(subprocess.run([str(VENV_BIN / "supervisorctl"), "-c", str(root / "etc/headscale/supervisord.conf"),
                              "pid", "server"], check=False, capture_output=True, text=True, timeout=30).stdout)
    os.kill(pid, signal.SIGKILL)
    assert a.wait(timeout=90) == 1
    out = a.output
    assert "gave up: server entered FATAL state" in out and "stopped: litestream" in out
    assert "entered FATAL and everything was stopped" in out
    assert "RESULT 2" not in out  # the listener's protocol channel does not leak into the logs
    copy = restore_copy(env, tmp_path / "copy.sqlite")
    conn = sqlite3.connect(copy)
    assert conn.execute("SELECT name FROM users").fetchall() == [("before-crash",)]
    conn.close()


def test_an_imported_headscale_database_is_served_and_not_imported_twice(appliances, root, moto_endpoint, bucket,
                                                                        s3, age_key, tmp_path):
    source = database_from_dump(DUMPS / "request_tags_migration_test.sql", tmp_path / "import.sqlite")
    conn = sqlite3.connect(source)
    imported_users = sorted(r[0] for r in conn.execute("SELECT name FROM users WHERE deleted_at IS NULL"))
    conn.close()
    s3.upload_file(str(source), bucket, "import-db.sqlite")
    env = appliance_env(root, moto_endpoint, bucket, age_key, IMPORT_DATABASE="true")

    first = appliances(env)
    first.wait_healthy()
    assert sorted(u["name"] for u in cli_json(first, "users", "list")) == imported_users
    first.wait_for("import recorded in s3://")
    cli(first, "users", "create", "made-after-import")
    assert first.stop() == 0

    wipe_local(root)
    second = appliances(env)
    second.wait_healthy()
    assert "was already imported" in second.output
    names = sorted(u["name"] for u in cli_json(second, "users", "list"))
    assert names == sorted(imported_users + ["made-after-import"])
    assert len(cli_json(second, "nodes", "list")) == 7
    assert second.stop() == 0
    assert_replica_encrypted(s3, bucket)


def thousand_node_database(path) -> None:
    """A headscale-layout database with 10 users and 1,000 nodes carrying realistic host info."""
    from app.store.migrate import migrate_file

    migrate_file(str(path))
    conn = sqlite3.connect(path)
    now = "2026-01-01 00:00:00+00:00"
    conn.executemany("INSERT INTO users(id, name, created_at, updated_at) VALUES (?, ?, ?, ?)",
                     [(u, f"user{u}", now, now) for u in range(1, 11)])
    rows = []
    for n in range(1, 1001):
        hostinfo = {"IPNVersion": "1.80.0", "OS": "linux", "Hostname": f"node{n}", "GoVersion": "go1.24",
                    "NetInfo": {"MappingVariesByDestIP": False, "PreferredDERP": 1,
                                "DERPLatency": {f"{r}-v4": 0.01 * r for r in range(1, 20)}},
                    "Services": [{"Proto": "tcp", "Port": 22 + i} for i in range(10)]}
        rows.append((n, f"mkey:{n:064x}", f"nodekey:{n:064x}", f"discokey:{n:064x}",
                     json.dumps([f"198.51.100.{n % 250}:41641", f"[2001:db8::{n:x}]:41641"]),
                     json.dumps(hostinfo), f"100.64.{n // 250}.{n % 250 + 1}", f"fd7a:115c:a1e0::{n:x}",
                     f"node{n}", f"node{n}", n % 10 + 1, "authkey", "[]", now, None, "[]", now, now))
    conn.executemany(
        "INSERT INTO nodes(id, machine_key, node_key, disco_key, endpoints, host_info, ipv4, ipv6, hostname,"
        " given_name, user_id, register_method, tags, last_seen, expiry, approved_routes, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    conn.commit()
    conn.close()


def test_boot_to_healthy_with_a_restore_of_1000_nodes(appliances, root, moto_endpoint, bucket, s3, age_key,
                                                      tmp_path):
    """Figures for the report (printed with -s): boot to /health 200 and restore time."""
    db = tmp_path / "thousand.sqlite"
    thousand_node_database(db)
    s3.upload_file(str(db), bucket, "import-db.sqlite")
    env = appliance_env(root, moto_endpoint, bucket, age_key, IMPORT_DATABASE="true")
    first = appliances(env)
    first.wait_healthy()
    first.wait_for("import recorded in s3://")
    assert first.stop() == 0

    wipe_local(root)
    second = appliances(env)
    seconds = second.wait_healthy()
    assert len(cli_json(second, "nodes", "list")) == 1000
    restore = next(line for line in second.output.splitlines() if "from the replica in" in line)
    print(f"\n{db.stat().st_size // 1024} KiB database, 1000 nodes: boot to /health 200 in {seconds:.2f}s; "
          f"{restore.split('entrypoint: ')[1]}")
    assert seconds < 30
    assert second.stop() == 0
