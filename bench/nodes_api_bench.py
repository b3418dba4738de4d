"""In-process figures for registration bursts and the node list at scale (no network).

    python -m bench.nodes_api_bench [--nodes 10000] [--concurrency 32]

1. registration: ``--nodes`` pre-auth key registrations through the Registrar, at most
   ``--concurrency`` at a time, on a temporary SQLite file (synchronous=FULL, as served):
   nodes/s and CPU per registration (all threads). Group commit (app/service/admissions.py)
   is what lets this go past one WAL sync per node.
2. node list: the body of ``GET /api/v1/node`` over every node, straight (``json.dumps`` of
   ``node_json`` dicts) vs from cached pieces (app/server/api_nodes.py), cold and warm, CPU
   seconds each; the bytes must be identical.

The end-to-end figures (real server, Noise, HTTP/2, the CLI) are bench/control_bench.py's
``--only-register``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time

from app.config import dev_config
from app.server.api_nodes import NodeListCache
from app.server.api_v1 import node_json
from app.service.registration import Registrar
from app.service.state import State
from app.store import Database


def hostinfo(i: int) -> dict:
    return {"IPNVersion": "1.90.0-bench", "OS": "linux", "Hostname": f"bench-{i:05d}", "GoArch": "amd64",
            "NetInfo": {"PreferredDERP": 1}}


async def run(nodes: int, concurrency: int) -> None:
    with tempfile.TemporaryDirectory(prefix="nodes-api-bench-") as d:
        db = await Database.open(f"{d}/db.sqlite")
        try:
            st = State(db, dev_config(d))
            await st.load()
            reg = Registrar(st)
            user = await st.create_user("bench")
            _, key = await st.create_preauth_key(user.id, reusable=True, ephemeral=False, expiration=None, tags=[])
            sem = asyncio.Semaphore(concurrency)

            async def one(i: int) -> None:
                async with sem:
                    out = await reg.register(f"mkey:{i:064x}", {
                        "NodeKey": f"nodekey:{i:064x}", "Auth": {"AuthKey": key}, "Hostinfo": hostinfo(i)})
                    assert out.get("MachineAuthorized"), out

            await one(nodes)   # the one bcrypt check, outside the timing
            t0, c0 = time.monotonic(), time.process_time()
            await asyncio.gather(*(one(i) for i in range(nodes - 1)))
            wall, cpu = time.monotonic() - t0, time.process_time() - c0
            print(f"registration: {nodes - 1} in {wall:.2f} s ({(nodes - 1) / wall:.0f}/s, {concurrency} at a time); "
                  f"CPU {cpu / (nodes - 1) * 1000:.2f} ms per registration")
            for i in list(st.nodes)[::4]:
                st.set_online(i, True)

            keys = {k.id: k for k in await st.list_preauth_keys()}
            listed = sorted(st.nodes.values(), key=lambda n: n.id)
            c0 = time.process_time()
            straight = json.dumps({"nodes": [node_json(n, st, keys) for n in listed]})
            c_straight = time.process_time() - c0
            cache = NodeListCache()
            c0 = time.process_time()
            cold = cache.body(st, listed, keys, complete=True)
            c_cold = time.process_time() - c0
            c0 = time.process_time()
            warm = cache.body(st, listed, keys, complete=True)
            c_warm = time.process_time() - c0
            assert straight == cold == warm, "cached node list differs from the straight serialisation"
            print(f"node list ({len(listed)} nodes, {len(straight) / 1e6:.1f} MB): straight {c_straight * 1000:.0f} ms, "
                  f"cached cold {c_cold * 1000:.0f} ms, warm {c_warm * 1000:.0f} ms CPU (identical bytes)")
        finally:
            await db.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.nodes_api_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=10000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args(argv)
    asyncio.run(run(args.nodes, args.concurrency))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
