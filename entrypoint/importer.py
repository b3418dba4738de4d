"""IMPORT_DATABASE=true: bring an existing headscale SQLite database into the appliance, once.

Flow: look for `import-db.sqlite` in the bucket; skip it when `import-db.sqlite.imported`
records the same ETag (it was imported before: importing again would throw away every change
made since); otherwise download it, check that it is an SQLite database that passes
`PRAGMA integrity_check`, migrate it with the server's own migrations and put it in place of
the restore. The marker is written only after Litestream has uploaded the imported database
(see `record_import`), so a crash before that simply imports again on the next boot.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import shutil
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from entrypoint.env import Settings
from entrypoint.layout import IMPORT_MARKER, IMPORT_OBJECT, REPLICA_PATH, Paths

log = logging.getLogger("entrypoint")

SQLITE_HEADER = b"SQLite format 3\x00"


class ImportFailed(Exception):
    pass


@dataclass(frozen=True)
class ImportSource:
    etag: str
    size: int


def s3_client(settings: Settings):  # -> botocore client
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=settings["AWS_ENDPOINT_URL_S3"],
        region_name=settings["AWS_REGION"],
        aws_access_key_id=settings["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=settings["AWS_SECRET_ACCESS_KEY"],
        config=Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": 4, "mode": "standard"},
            connect_timeout=5,
            read_timeout=60,
        ),
    )


def _missing(error: Exception) -> bool:
    from botocore.exceptions import ClientError

    return isinstance(error, ClientError) and error.response.get("Error", {}).get("Code") in (
        "404", "NoSuchKey", "NotFound")


def find_source(client, bucket: str) -> ImportSource | None:
    """The import object if there is one that was not imported yet; logs why not otherwise."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        head = client.head_object(Bucket=bucket, Key=IMPORT_OBJECT)
    except (ClientError, BotoCoreError) as error:
        if _missing(error):
            log.info("IMPORT_DATABASE=true but s3://%s/%s does not exist: nothing to import", bucket, IMPORT_OBJECT)
            return None
        raise ImportFailed(f"cannot look for s3://{bucket}/{IMPORT_OBJECT}: {error}") from error
    source = ImportSource(etag=head["ETag"].strip('"'), size=int(head.get("ContentLength", 0)))
    try:
        marker = json.loads(client.get_object(Bucket=bucket, Key=IMPORT_MARKER)["Body"].read())
    except (ClientError, BotoCoreError) as error:
        if _missing(error):
            return source
        raise ImportFailed(f"cannot read s3://{bucket}/{IMPORT_MARKER}: {error}") from error
    except ValueError:
        log.warning("s3://%s/%s is not valid JSON; treating the import as not done", bucket, IMPORT_MARKER)
        return source
    if marker.get("source_etag") == source.etag:
        log.info(
            "IMPORT_DATABASE=true but %s (ETag %s) was already imported at %s: NOT importing it again "
            "(that would discard every change made since); restoring the replica instead. "
            "Unset IMPORT_DATABASE or delete the object to silence this.",
            IMPORT_OBJECT, source.etag, marker.get("imported_at", "?"),
        )
        return None
    log.info("%s (ETag %s) differs from the last import (%s): importing it",
             IMPORT_OBJECT, source.etag, marker.get("source_etag"))
    return source


def check_sqlite(path: Path) -> None:
    with open(path, "rb") as f:
        header = f.read(len(SQLITE_HEADER))
    if header != SQLITE_HEADER:
        raise ImportFailed(f"{IMPORT_OBJECT} is not an SQLite database (no 'SQLite format 3' header)")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True)
        try:
            rows = [r[0] for r in conn.execute("PRAGMA integrity_check")]
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        finally:
            conn.close()
    except sqlite3.DatabaseError as error:
        raise ImportFailed(f"{IMPORT_OBJECT} cannot be read as SQLite: {error}") from error
    if rows != ["ok"]:
        raise ImportFailed(f"{IMPORT_OBJECT} fails PRAGMA integrity_check: {'; '.join(rows[:5])}")
    if not {"users", "nodes"} <= tables:
        raise ImportFailed(f"{IMPORT_OBJECT} has no users/nodes tables: not a headscale database")


def server_migrate() -> Callable[[str], None]:
    """The control server's own `migrate_file(path)` (app.store)."""
    for name in ("app.store.migrate", "app.store.db", "app.store"):
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name and name.startswith(error.name):
                continue
            raise
        migrate = getattr(module, "migrate_file", None)
        if callable(migrate):
            return migrate
    raise ImportFailed("the server's migrations (app.store migrate_file) are not available in this image")


def download(client, bucket: str, paths: Paths, source: ImportSource,
             migrate: Callable[[str], None] | None = None) -> Path:
    """Download, check and migrate into a temporary file next to the database; returns it."""
    from botocore.exceptions import BotoCoreError, ClientError

    tmp = paths.data_dir / (IMPORT_OBJECT + ".download")
    for leftover in paths.data_dir.glob(tmp.name + "*"):
        leftover.unlink()
    started = time.monotonic()
    try:
        body = client.get_object(Bucket=bucket, Key=IMPORT_OBJECT, IfMatch=f'"{source.etag}"')["Body"]
        with open(tmp, "wb") as f:
            shutil.copyfileobj(body, f, 1 << 20)
    except (ClientError, BotoCoreError) as error:
        raise ImportFailed(f"cannot download s3://{bucket}/{IMPORT_OBJECT}: {error}") from error
    check_sqlite(tmp)
    try:
        (migrate or server_migrate())(str(tmp))
    except ImportFailed:
        raise
    except Exception as error:  # the server's migrations reject the file: say why, stop the boot
        raise ImportFailed(f"{IMPORT_OBJECT} cannot be migrated by the server: {error}") from error
    conn = sqlite3.connect(tmp)
    try:
        conn.execute("PRAGMA journal_mode=WAL")  # what the server and Litestream use
    finally:
        conn.close()
    log.info("downloaded, checked and migrated %s (%d bytes) in %.2fs", IMPORT_OBJECT, source.size,
             time.monotonic() - started)
    return tmp


def put_in_place(tmp: Path, paths: Paths) -> None:
    """Replace any local database and Litestream's local state: replication starts a new generation."""
    for stale in (paths.db, Path(f"{paths.db}-wal"), Path(f"{paths.db}-shm")):
        stale.unlink(missing_ok=True)
    shutil.rmtree(paths.litestream_meta, ignore_errors=True)
    for side in (Path(f"{tmp}-wal"), Path(f"{tmp}-shm"), Path(f"{tmp}-journal")):
        side.unlink(missing_ok=True)
    os.chmod(tmp, 0o600)
    os.replace(tmp, paths.db)


def generation_uploaded(client, bucket: str, generation: str) -> bool:
    prefix = f"{REPLICA_PATH}/generations/{generation}/snapshots/"
    listing = client.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
    return listing.get("KeyCount", 0) > 0


def record_import(client, bucket: str, source: ImportSource, generation: str) -> None:
    marker = {
        "source_key": IMPORT_OBJECT,
        "source_etag": source.etag,
        "source_size": source.size,
        "generation": generation,
        "imported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    client.put_object(Bucket=bucket, Key=IMPORT_MARKER, Body=json.dumps(marker, indent=2).encode(),
                      ContentType="application/json")
