"""HA takeover time against tailnet size: ``python -m bench.ha_bench [--nodes 1000 10000]``.

For each size: a real PostgreSQL (Debian's, started in a temporary directory as the tests do)
holding N nodes, two ``headscale serve`` processes on it; then ``kill -9`` of the active one and
the time until the standby answers ``/health`` with 200 (its log says how much of that was
loading the tailnet).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import tempfile
import time
from pathlib import Path


async def _fill(url: str, count: int) -> None:
    from app.store import Database

    db = await Database.open_postgres(url)
    try:
        user = await db.create_user("bench")
        rows = [(f"mkey:{i:064x}", f"nodekey:{i:064x}", f"discokey:{i:064x}", f"n{i}", f"n{i}", user.id,
                 f"100.{64 + i // 64000}.{i // 250 % 256}.{i % 250 + 1}", '["192.0.2.1:41641"]',
                 f'{{"OS":"linux","Hostname":"n{i}"}}', "[]", "[]", "2026-01-01 00:00:00+00:00",
                 "2026-01-01 00:00:00+00:00") for i in range(count)]
        async with db._write() as conn:
            await conn.executemany(
                "INSERT INTO nodes (machine_key, node_key, disco_key, hostname, given_name, user_id, ipv4,"
                " endpoints, host_info, tags, approved_routes, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    finally:
        await db.close()


def measure(count: int) -> float:
    from tests.pgcluster import Cluster
    from tests.server.test_ha_processes import Proc, wait_until

    cluster = Cluster()
    cluster.start()
    a = b = None
    try:
        name = cluster.create_database("bench")
        asyncio.run(_fill(cluster.url(name), count))
        work = Path(tempfile.mkdtemp(prefix="ha-bench-"))
        pg = {"host": "127.0.0.1", "port": cluster.port, "name": name, "user": "postgres",
              "pass": cluster.admin_password}
        a, b = Proc(work, "a", pg), Proc(work, "b", pg)
        a.start()
        wait_until(lambda: a.health() == 200, 300, "first server active")
        b.start()
        wait_until(lambda: "waiting for the lease" in b.log.read_text(), 60, "second server standing by")
        os.killpg(a.proc.pid, signal.SIGKILL)
        killed = time.monotonic()
        wait_until(lambda: b.health() == 200, 120, "standby serving")
        took = time.monotonic() - killed
        line = [x for x in b.log.read_text().splitlines() if "nodes loaded" in x][-1]
        print(f"{count:>7} nodes: kill -9 -> standby serving in {took:.2f} s ({line.split('HA: ')[-1]})", flush=True)
        return took
    finally:
        for p in (a, b):
            if p is not None:
                p.stop()
        cluster.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ha_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[1000, 10000])
    args = parser.parse_args(argv)
    for count in args.nodes:
        measure(count)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
