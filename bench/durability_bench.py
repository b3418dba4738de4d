"""What `PRAGMA synchronous = FULL` costs compared to NORMAL (WAL mode), measured.

    python -m bench.durability_bench [--registrations 200] [--concurrency 10] [--commits 500]

For each mode, a fresh in-process server on a temporary directory (same disk as the default
data directory) and:

1. commits/s: ``--commits`` single-row writes one after another (users created through the
   store), the bare cost of one durable commit;
2. registrations/s: ``--registrations`` nodes registering with a reusable pre-auth key over
   Noise, ``--concurrency`` at a time (handshake, register, first map: what a client waits for).

With WAL, NORMAL syncs only at checkpoints, so a power loss (not a process crash) can lose the
last commits that clients were told succeeded; FULL syncs the WAL at every commit.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import time

from app.client.control import ControlClient, fetch_key
from app.config import dev_config
from app.server.serve import build, start, stop
from app.store import db as store_db


async def _one_mode(mode: str, args, base: str) -> dict:
    store_db.SYNCHRONOUS = mode
    tmp = tempfile.mkdtemp(prefix=f"durability-{mode.lower()}-", dir=base)
    cfg = dev_config(tmp, overrides={"listen_addr": "127.0.0.1:0", "metrics_listen_addr": "",
                                     "tuning.batch_change_delay": "20ms"})
    services = await build(cfg)
    await start(services)
    try:
        st = services.state
        row = await st.db._fetchone("PRAGMA synchronous")
        assert int(row[0]) == {"NORMAL": 1, "FULL": 2}[mode], row
        t0 = time.perf_counter()
        for i in range(args.commits):
            await st.create_user(f"u{i}")
        commits = args.commits / (time.perf_counter() - t0)

        user = st.user_by_name("u0")
        _, key = await st.create_preauth_key(user.id, reusable=True, ephemeral=False, expiration=None, tags=[])
        host, port = services.addresses["listen"]
        server_key = await fetch_key(host, port)
        sem = asyncio.Semaphore(args.concurrency)

        async def register(i: int) -> None:
            async with sem:
                c = ControlClient(host, port)
                await c.connect(server_key)
                await c.register(key, hostinfo={"Hostname": f"n{i}"})
                c.writer.close()

        t0 = time.perf_counter()
        await asyncio.gather(*(register(i) for i in range(args.registrations)))
        regs = args.registrations / (time.perf_counter() - t0)
    finally:
        await stop(services)
        shutil.rmtree(tmp, ignore_errors=True)
    return {"commits": commits, "registrations": regs}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.durability_bench")
    p.add_argument("--registrations", type=int, default=200)
    p.add_argument("--concurrency", type=int, default=10)
    p.add_argument("--commits", type=int, default=500)
    p.add_argument("--dir", default=os.path.abspath("data"), help="where the databases go (the disk that matters)")
    args = p.parse_args(argv)
    os.makedirs(args.dir, exist_ok=True)
    original = store_db.SYNCHRONOUS
    out = {}
    try:
        for mode in ("NORMAL", "FULL", "NORMAL", "FULL"):   # twice each, interleaved
            r = asyncio.run(_one_mode(mode, args, args.dir))
            prev = out.get(mode)
            out[mode] = r if prev is None else {k: max(v, prev[k]) for k, v in r.items()}
            print(f"  {mode:<6} {r['commits']:8.0f} commits/s   {r['registrations']:7.1f} registrations/s",
                  flush=True)
    finally:
        store_db.SYNCHRONOUS = original
    n, f = out["NORMAL"], out["FULL"]
    print(f"synchronous=NORMAL: {n['commits']:.0f} commits/s, {n['registrations']:.1f} registrations/s", flush=True)
    print(f"synchronous=FULL:   {f['commits']:.0f} commits/s, {f['registrations']:.1f} registrations/s "
          f"({100 * (f['registrations'] / n['registrations'] - 1):+.0f}% registrations, "
          f"{100 * (f['commits'] / n['commits'] - 1):+.0f}% commits)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
