"""Server-side cost of policy changes and node changes at scale, in process (no sockets).

A real State (SQLite), Mapper and Batcher with N nodes and a map session for every node.
Measures CPU seconds (process time, so other load on the machine does not count) for:

- ``policy set`` of the control bench's phase-6 policies (``* -> *:<port>``): compiling,
  then the flush that builds every session's delta (filter per node, compare, frame);
- a user-rule policy (groups and tags), set the same way;
- one node changing (tags), joining and leaving with that policy active, and 100 joins in
  one batching tick: the state change (policy refresh) and the flush.

    .venv/bin/python -m bench.policy_flush_bench [--nodes 10000] [--profile OUT]

With ``--profile`` the policy-set and node-change steps are profiled to OUT.<step>
(cProfile, view with ``python -m pstats``).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import ctypes
import gc
import json
import tempfile
import time
from typing import Any

from app.config import dev_config
from app.core.model import Node
from app.service.sessions import Batcher, Mapper, MapSession
from app.service.state import State
from app.store import Database

USERS = [f"user{i}" for i in range(20)]
TAGS = [f"tag:t{i}" for i in range(10)]


def user_policy(port: int) -> str:
    return json.dumps({
        "groups": {"group:eng": ["user0@", "user1@", "user2@"], "group:ops": ["user3@", "user4@"]},
        "tagOwners": {t: ["user0@"] for t in TAGS},
        "acls": [
            {"action": "accept", "src": ["group:eng"], "dst": ["tag:t0:*", "tag:t1:443"]},
            {"action": "accept", "src": ["group:ops"], "dst": [f"tag:t2:{port}", "tag:t3:22"]},
            {"action": "accept", "src": ["tag:t4"], "dst": ["tag:t5:5432"]},
            {"action": "accept", "src": ["autogroup:member"], "dst": ["autogroup:self:*"]},
        ],
    })


class Clock:
    def __init__(self, match: str = "") -> None:
        self.out: dict[str, dict[str, float]] = {}
        self.match = match

    def step(self, label: str, fn: Any, profile: str | None = None) -> Any:
        prof = cProfile.Profile() if profile and self.match in label else None
        c0, w0 = time.process_time(), time.perf_counter()
        if prof:
            prof.enable()
        result = fn()
        if prof:
            prof.disable()
            prof.dump_stats(f"{profile}.{label.replace(' ', '_').replace(':', '')}")
        self.out[label] = {"cpu": time.process_time() - c0, "wall": time.perf_counter() - w0, "rss_mib": rss_mib()}
        return result

    async def astep(self, label: str, coro_fn: Any, profile: str | None = None) -> Any:
        prof = cProfile.Profile() if profile and self.match in label else None
        c0, w0 = time.process_time(), time.perf_counter()
        if prof:
            prof.enable()
        result = await coro_fn()
        if prof:
            prof.disable()
            prof.dump_stats(f"{profile}.{label.replace(' ', '_').replace(':', '')}")
        self.out[label] = {"cpu": time.process_time() - c0, "wall": time.perf_counter() - w0, "rss_mib": rss_mib()}
        return result


def rss_mib() -> float:
    """Resident set after a collection and giving freed heap back (what stays, not the peak)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def run(n_nodes: int, profile: str | None, match: str = "") -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = dev_config(tmp, overrides={"dns.base_domain": "bench.internal"})
        db = await Database.open(f"{tmp}/db.sqlite")
        try:
            st = State(db, cfg)
            await st.load()
            from app.server.serve import map_settings

            st.settings = map_settings(cfg)
            for u in USERS:
                await st.create_user(u)
            users = [st.user_by_name(u) for u in USERS]
            mapper = Mapper(st)
            batcher = Batcher(st, mapper, 0.0)
            clock = Clock(match)
            t0 = time.perf_counter()
            for i in range(n_nodes):
                tagged = i % 5 == 0
                async with st.lock:
                    await st.create_node(Node(
                        id=0, machine_key=f"mkey:{i:064x}", node_key=f"nodekey:{i:064x}",
                        disco_key=f"discokey:{i:064x}", hostname=f"host-{i}",
                        user_id=None if tagged else users[i % len(users)].id,
                        tags=(TAGS[i % len(TAGS)],) if tagged else (),
                        endpoints=(f"192.0.2.{i % 250}:41641",), hostinfo={"Hostname": f"host-{i}"}))
            batcher.flush()
            sessions = []
            for nid in sorted(st.nodes):
                s = MapSession(nid, 130)
                batcher.attach(s)
                mapper.full_map_frame(s)
                sessions.append(s)
            gc.collect()
            print(f"{n_nodes} nodes and sessions ready in {time.perf_counter() - t0:.1f} s, rss {rss_mib():.1f} MiB")

            def drain() -> int:
                n = 0
                for s in sessions:
                    while not s.queue.empty():
                        s.queue.get_nowait()
                        n += 1
                return n

            for rep, port in enumerate((1001, 1002)):
                text = json.dumps({"acls": [{"action": "accept", "src": ["*"], "dst": [f"*:{port}"]}]})
                await clock.astep(f"allow-all policy set {rep + 1}: compile",
                                  lambda text=text: st.load_policy(text), profile)
                clock.step(f"allow-all policy set {rep + 1}: flush", batcher.flush, profile)
                drain()
            for rep, port in enumerate((2001, 2002)):
                await clock.astep(f"user policy set {rep + 1}: compile",
                                  lambda port=port: st.load_policy(user_policy(port)), profile)
                clock.step(f"user policy set {rep + 1}: flush", batcher.flush, profile)
                drain()
            ids = sorted(st.nodes)
            for rep, nid in enumerate(ids[1:4]):
                await clock.astep(f"tag change {rep + 1}: state", lambda nid=nid, rep=rep: st.set_tags(nid, [TAGS[rep]]),
                                  profile)
                clock.step(f"tag change {rep + 1}: flush", batcher.flush, profile)
                drain()

            async def join() -> Node:
                async with st.lock:
                    return await st.create_node(Node(
                        id=0, machine_key="mkey:new", node_key="nodekey:new", disco_key="discokey:new",
                        hostname="newcomer", user_id=users[3].id, hostinfo={"Hostname": "newcomer"}))
            node = await clock.astep("join: state", join, profile)
            clock.step("join: flush", batcher.flush, profile)
            drain()
            await clock.astep("leave: state", lambda: st.delete_node(node.id), profile)
            clock.step("leave: flush", batcher.flush, profile)
            drain()

            async def burst() -> None:     # a registration burst within one batching tick
                async with st.lock:
                    for i in range(100):
                        await st.create_node(Node(
                            id=0, machine_key=f"mkey:burst{i}", node_key=f"nodekey:burst{i}",
                            disco_key=f"discokey:burst{i}", hostname=f"burst{i}", user_id=users[i % 7].id,
                            hostinfo={"Hostname": f"burst{i}"}))
            await clock.astep("100 joins: state", burst, profile)
            clock.step("100 joins: flush", batcher.flush, profile)
            drain()
            return clock.out
        finally:
            await db.close()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=10000)
    ap.add_argument("--profile", default=None, help="write cProfile stats to PROFILE.<step>")
    ap.add_argument("--profile-steps", default="", help="profile only steps whose label contains this")
    ap.add_argument("--json", default=None, help="write the figures as JSON to this file")
    args = ap.parse_args(argv)
    out = asyncio.run(run(args.nodes, args.profile, args.profile_steps))
    for label, t in out.items():
        print(f"  {label:<36} cpu {t['cpu'] * 1000:8.1f} ms   wall {t['wall'] * 1000:8.1f} ms   "
              f"rss {t['rss_mib']:7.1f} MiB")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"nodes": args.nodes, "steps": out}, f, indent=1)
    return out


if __name__ == "__main__":
    main()
