"""Faults of the whole appliance: power loss during writes, a damaged replica.

kill -9 of every process at once (entrypoint, supervisord, server, Litestream) is what a Fly
host failure does; the Machine's disk is then gone, and the next boot restores from the bucket.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import urllib.request
from pathlib import Path

from tests.entrypoint.conftest import appliance_env, bucket_objects, restore_copy, wipe_local
from tests.entrypoint.test_supervise import rows

SYNC_INTERVAL = 1.0


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def power_loss(appliance) -> None:
    """SIGKILL the appliance's whole process tree at once: nothing gets to flush or sync."""
    pids = descendants(appliance.proc.pid)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    appliance.wait(timeout=30)


def test_power_loss_during_writes_loses_at_most_the_sync_interval(appliances, root, moto_endpoint, bucket, s3,
                                                                  age_key, standin_bin, tmp_path):
    env = appliance_env(root, moto_endpoint, bucket, age_key, path_first=standin_bin,
                        LITESTREAM_SYNC_INTERVAL=f"{int(SYNC_INTERVAL)}s")
    first = appliances(env)
    first.wait_healthy()
    time.sleep(2)  # Litestream has made its first snapshot
    acked: list[float] = []
    stop = threading.Event()

    def writer() -> None:
        while not stop.is_set():
            t = round(time.time(), 6)
            req = urllib.request.Request(f"{first.listen}/write?value={t:.6f}", method="POST")
            try:
                urllib.request.urlopen(req, timeout=5).read()
            except OSError:
                return
            acked.append(t)
            time.sleep(0.01)

    thread = threading.Thread(target=writer)
    thread.start()
    time.sleep(4)
    killed_at = time.time()
    power_loss(first)
    stop.set()
    thread.join(timeout=10)
    acked = [t for t in acked if t < killed_at]
    assert len(acked) > 50

    wipe_local(root)
    second = appliances(env)
    second.wait_healthy()
    assert "restored" in second.output
    assert second.stop() == 0
    restored = [float(v) for v in rows(restore_copy(env, tmp_path / "copy.sqlite")) if v[:1].isdigit()]
    # what came back is exactly a prefix of what was acknowledged: nothing reordered or invented
    assert restored == acked[:len(restored)]
    lost = acked[-1] - (restored[-1] if restored else acked[0])
    print(f"\npower loss: {len(acked)} acknowledged writes, {len(acked) - len(restored)} lost, "
          f"window {lost:.2f}s (LITESTREAM_SYNC_INTERVAL={SYNC_INTERVAL:.0f}s)")
    assert lost <= SYNC_INTERVAL + 1.0, f"lost {lost:.2f}s of acknowledged writes"


def test_a_damaged_replica_stops_the_boot_with_a_clear_message(appliances, root, moto_endpoint, bucket, s3,
                                                               age_key, standin_bin):
    env = appliance_env(root, moto_endpoint, bucket, age_key, path_first=standin_bin)
    a = appliances(env)
    a.wait_healthy()
    assert a.stop() == 0
    snapshots = [k for k in bucket_objects(s3, bucket) if "/snapshots/" in k]
    assert snapshots
    for key in snapshots:  # flip bytes inside the encrypted body, keep the age header
        body = bytearray(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        for i in range(200, min(len(body), 400)):
            body[i] ^= 0xFF
        s3.put_object(Bucket=bucket, Key=key, Body=bytes(body))
    before = bucket_objects(s3, bucket)
    wipe_local(root)
    b = appliances(env)
    assert b.wait(timeout=90) == 1
    out = b.output
    assert "the server is not started on an empty database" in out, out
    assert "the replica in the bucket is damaged" in out and "restore an older one" in out
    assert "retrying" not in out  # no retry can fix it
    assert "supervisord started" not in out
    assert bucket_objects(s3, bucket) == before
    print("\n" + "\n".join(line for line in out.splitlines() if "restore" in line))
