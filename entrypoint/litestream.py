"""Litestream at boot: restore the database from the replica before anything starts.

`litestream restore -if-db-not-exists -if-replica-exists` exits 0 both when it restored and when
the bucket holds no replica yet (first boot). Any other outcome must stop the boot: starting the
server (and thus `litestream replicate`) on an empty database while a replica exists would make
a new, empty generation the latest one, and retention would later delete the good one.
Transient failures (network, S3 errors) are retried with exponential backoff; a key that cannot
decrypt the replica is not retried.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from entrypoint.layout import Paths, Tools

log = logging.getLogger("entrypoint")

# Litestream 0.3.13 messages that no retry can fix, with what the operator should do.
PERMANENT = {
    "no identity matched any of the recipients":
        "AGE_SECRET_KEY cannot decrypt the replica in the bucket (wrong key?)",
    "no secret keys found": "AGE_SECRET_KEY is empty or unreadable for Litestream",
    "failed to decrypt and authenticate payload chunk":
        "the replica in the bucket is damaged (an object fails age authentication); list its "
        "generations with `litestream generations` and restore an older one, or import a database",
    "lz4: bad magic number":
        "the replica in the bucket is damaged (an object is not LZ4 data); list its generations with "
        "`litestream generations` and restore an older one, or import a database",
    "NoSuchBucket": "BUCKET_NAME does not exist at AWS_ENDPOINT_URL_S3",
    "InvalidAccessKeyId": "AWS_ACCESS_KEY_ID is not known to the S3 endpoint",
    "SignatureDoesNotMatch": "AWS_SECRET_ACCESS_KEY does not match AWS_ACCESS_KEY_ID",
}


class RestoreFailed(Exception):
    pass


@dataclass(frozen=True)
class RestoreResult:
    restored: bool  # False: the database already existed or the bucket holds no replica
    seconds: float
    attempts: int


def restore_argv(tools: Tools, paths: Paths) -> list[str]:
    return [tools.litestream, "restore", "-config", str(paths.litestream_config),
            "-if-db-not-exists", "-if-replica-exists", str(paths.db)]


def clean_litter(paths: Paths) -> None:
    """A failed restore leaves `db.sqlite.tmp` (and -wal/-shm of it); remove before retrying."""
    for leftover in paths.data_dir.glob(paths.db.name + ".tmp*"):
        leftover.unlink(missing_ok=True)


def remove_orphans(paths: Paths) -> None:
    """Without db.sqlite, a -wal/-shm or Litestream state left next to it belongs to some other
    database: SQLite would replay that WAL into the restored file. Remove them."""
    if paths.db.exists():
        return
    for orphan in (Path(f"{paths.db}-wal"), Path(f"{paths.db}-shm"), Path(f"{paths.db}-journal")):
        if orphan.exists():
            log.warning("removing %s: left over without its database", orphan)
            orphan.unlink()
    shutil.rmtree(paths.litestream_meta, ignore_errors=True)


def restore(
    tools: Tools,
    paths: Paths,
    environ: Mapping[str, str],
    attempts: int,
    sleep: Callable[[float], None] = time.sleep,
) -> RestoreResult:
    started = time.monotonic()
    remove_orphans(paths)
    existed = paths.db.exists()
    last = ""
    for attempt in range(1, attempts + 1):
        clean_litter(paths)
        proc = subprocess.run(
            restore_argv(tools, paths), env=dict(environ), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, timeout=900, check=False,
        )
        output = proc.stdout.strip()
        for line in output.splitlines():
            log.info("litestream restore: %s", line)
        if proc.returncode == 0:
            clean_litter(paths)
            return RestoreResult(restored=not existed and paths.db.exists(),
                                 seconds=time.monotonic() - started, attempts=attempt)
        last = output.splitlines()[-1] if output else f"exit status {proc.returncode}"
        for needle, meaning in PERMANENT.items():
            if needle in output:
                clean_litter(paths)
                raise RestoreFailed(f"restore failed: {meaning} (litestream: {last})")
        if attempt < attempts:
            delay = min(2 ** (attempt - 1), 30)
            log.warning("restore attempt %d/%d failed (%s); retrying in %ds", attempt, attempts, last, delay)
            sleep(delay)
    clean_litter(paths)
    raise RestoreFailed(f"restore failed after {attempts} attempts: {last}")


def current_generation(paths: Paths) -> str | None:
    """The generation `litestream replicate` is writing (its local bookkeeping file)."""
    try:
        return (paths.litestream_meta / "generation").read_text().strip() or None
    except FileNotFoundError:
        return None
