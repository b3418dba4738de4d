"""IMPORT_DATABASE=true: import-db.sqlite is imported once, replicated, and never imported again."""

from __future__ import annotations

import json
import sqlite3
import urllib.request
from pathlib import Path

import pytest

from tests.entrypoint.conftest import (
    REPO,
    appliance_env,
    assert_replica_encrypted,
    bucket_objects,
    restore_copy,
    wipe_local,
)

DUMPS = REPO.parent / "shared" / "testdata" / "headscale-sqlite"


def database_from_dump(dump: Path, out: Path) -> Path:
    conn = sqlite3.connect(out)
    conn.executescript(dump.read_text())
    conn.close()
    return out


def counts(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(db)
    try:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("users", "nodes")}
    finally:
        conn.close()


def write(appliance, value: str) -> None:
    req = urllib.request.Request(f"{appliance.listen}/write?value={value}", method="POST")
    urllib.request.urlopen(req, timeout=5).read()


def events(db: Path) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        return [r[0] for r in conn.execute("SELECT value FROM events ORDER BY id")]
    finally:
        conn.close()


def test_import_happens_once_and_later_changes_survive_a_reboot_with_the_flag_still_set(
        appliances, root, moto_endpoint, bucket, s3, age_key, standin_bin, tmp_path):
    source = database_from_dump(DUMPS / "request_tags_migration_test.sql", tmp_path / "import.sqlite")
    s3.upload_file(str(source), bucket, "import-db.sqlite")
    etag = s3.head_object(Bucket=bucket, Key="import-db.sqlite")["ETag"].strip('"')
    env = appliance_env(root, moto_endpoint, bucket, age_key, path_first=standin_bin, IMPORT_DATABASE="true")

    first = appliances(env)
    first.wait_healthy()
    first.wait_for("import recorded in s3://")
    write(first, "after-import")
    assert first.stop() == 0
    assert "imported import-db.sqlite into" in first.output
    marker = json.loads(s3.get_object(Bucket=bucket, Key="import-db.sqlite.imported")["Body"].read())
    assert marker["source_etag"] == etag and marker["generation"]

    wipe_local(root)
    second = appliances(env)
    second.wait_healthy()
    assert second.stop() == 0
    out = second.output
    assert f"(ETag {etag}) was already imported" in out and "NOT importing it again" in out
    assert "restored" in out and "imported import-db.sqlite into" not in out

    copy = restore_copy(env, tmp_path / "copy.sqlite")
    assert counts(copy) == counts(source) == {"users": 3, "nodes": 7}
    assert "after-import" in events(copy)
    conn = sqlite3.connect(copy)
    assert ("pyheadscale-0001-baseline",) in conn.execute("SELECT id FROM migrations").fetchall()
    conn.close()
    assert_replica_encrypted(s3, bucket)


def test_a_new_import_object_is_imported_again(appliances, root, moto_endpoint, bucket, s3, age_key,
                                               standin_bin, tmp_path):
    env = appliance_env(root, moto_endpoint, bucket, age_key, path_first=standin_bin, IMPORT_DATABASE="true")
    s3.put_object(Bucket=bucket, Key="import-db.sqlite.imported",
                  Body=json.dumps({"source_etag": "an-older-object"}).encode())
    source = database_from_dump(DUMPS / "zero_time_expiry_migration_test.sql", tmp_path / "import.sqlite")
    s3.upload_file(str(source), bucket, "import-db.sqlite")
    a = appliances(env)
    a.wait_for("import recorded in s3://")
    assert "differs from the last import (an-older-object): importing it" in a.output
    assert a.stop() == 0
    assert counts(restore_copy(env, tmp_path / "copy.sqlite")) == counts(source)


def _corrupt(path: Path) -> None:
    """Overwrite the b-tree page header of the nodes table: the header stays valid, the data not."""
    conn = sqlite3.connect(path)
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'nodes'").fetchone()[0]
    conn.close()
    data = bytearray(path.read_bytes())
    offset = (root - 1) * page_size
    data[offset: offset + 12] = b"\x0d\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("kind", ["not-sqlite", "corrupt"])
def test_a_bad_import_stops_the_boot_and_writes_nothing(appliances, root, moto_endpoint, bucket, s3, age_key,
                                                        standin_bin, tmp_path, kind):
    if kind == "not-sqlite":
        s3.put_object(Bucket=bucket, Key="import-db.sqlite", Body=b"PGDMP this is a pg_dump, not SQLite")
        expected = "is not an SQLite database"
    else:
        db = database_from_dump(DUMPS / "request_tags_migration_test.sql", tmp_path / "bad.sqlite")
        _corrupt(db)
        s3.upload_file(str(db), bucket, "import-db.sqlite")
        expected = "import-db.sqlite"
    env = appliance_env(root, moto_endpoint, bucket, age_key, path_first=standin_bin, IMPORT_DATABASE="true")
    a = appliances(env)
    assert a.wait(timeout=30) == 1
    out = a.output
    assert "import stopped the boot" in out and expected in out
    assert "supervisord started" not in out
    assert set(bucket_objects(s3, bucket)) == {"import-db.sqlite"}
    assert not (root / "var/lib/headscale/db.sqlite").exists()


def test_no_import_object_falls_back_to_the_restore(appliances, root, moto_endpoint, bucket, s3, age_key,
                                                    standin_bin):
    env = appliance_env(root, moto_endpoint, bucket, age_key, path_first=standin_bin, IMPORT_DATABASE="true")
    a = appliances(env)
    a.wait_healthy()
    assert a.stop() == 0
    assert "import-db.sqlite does not exist: nothing to import" in a.output
    assert "no replica in the bucket yet" in a.output
