"""Soak: N simulated nodes, a steady stream of changes, minutes long; nothing lost, nothing leaks.

    python -m bench.soak [--nodes 1000] [--rate 100] [--minutes 10] [--observers 100] [--json out.json]

A real ``headscale serve`` runs as its own process (pinned to one CPU); the nodes are our own
protocol client in worker processes (bench/soak_worker.py, pinned to the other CPU). Every node
registers with one reusable pre-auth key and opens its streaming map session. Then, for the
duration, the workers fire ``--rate`` endpoint changes per second (lite map updates from random
nodes, each with a unique marker endpoint) and churn ``--churn`` sessions per second (a new map
stream on the same connection, or a new Noise connection); the orchestrator renames a node
through the API every ``--rename-every`` seconds.

Checks (the exit status is 1 when one fails):

- no lost deltas: after the changes stop and the server has gone quiet, every observer node's
  view of every peer (built from its full map and the PeersChanged / PeersChangedPatch /
  PeersRemoved deltas that followed) equals the final state: the last acknowledged marker of
  each node and its last name. ``--observers`` nodes keep a view (decoding every message);
  the others only count messages, so the load generator does not starve the server.
- server RSS (/proc/<pid>/status), open descriptors (/proc/<pid>/fd), live asyncio tasks
  (``headscale_asyncio_tasks``) and map sessions (``headscale_map_sessions``) are sampled every
  ``--sample`` seconds. RSS growth from the first sample after ``--warmup`` seconds of changes to
  the end is under ``--rss-tolerance`` percent; sessions equal the connected nodes; tasks and
  descriptors at the end are within ``--slack`` of their value after warm-up, and back near
  their value before any node connected once every node has disconnected.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import random
import sys
import tempfile
import time
import urllib.request
from typing import Any

from bench.control_bench import (
    HOST,
    Proc,
    Workers,
    endpoints,
    free_port,
    percentile,
    pin,
    read_text,
    server_command,
    start_server,
    stop_all,
    unix_request,
    write_config,
)
from bench.soak_worker import worker_main

GAUGES = {"headscale_asyncio_tasks": "tasks", "headscale_map_sessions": "sessions",
          "headscale_noise_connections": "noise", "headscale_nodes_online": "online"}


def scrape(port: int) -> dict[str, float]:
    out: dict[str, float] = {}
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return out
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in GAUGES:
            out[GAUGES[name]] = float(value)
    return out


class Sampler:
    """Server RSS, descriptors, tasks and sessions, and CPU of server and load generator."""

    def __init__(self, pid: int, mport: int, worker_pids: list[int]) -> None:
        self.proc, self.mport, self.worker_pids = Proc(pid), mport, worker_pids
        self.t0 = time.monotonic()
        self.samples: list[dict[str, Any]] = []
        self.gen_cpu: dict[int, float] = {}

    def _gen_cpu(self, pid: int) -> float:
        with contextlib.suppress(OSError):      # a worker that has exited keeps its last figure
            self.gen_cpu[pid] = Proc(pid).cpu_seconds()
        return self.gen_cpu.get(pid, 0.0)

    def _rss_parts(self) -> dict[str, float]:
        """RSS split: anonymous (the heap: what a leak grows) and file/shared (SQLite's mapped
        WAL index, libraries)."""
        out = {}
        with contextlib.suppress(OSError), open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("RssAnon", "RssFile", "RssShmem"):
                    out[key.lower()[3:] + "_mib"] = round(int(value.split()[0]) / 1024, 1)
        return out

    async def sample(self, label: str = "") -> dict[str, Any]:
        m = await asyncio.to_thread(scrape, self.mport)
        s = {"t": round(time.monotonic() - self.t0, 1), "label": label, "rss_mib": round(self.proc.rss_mib(), 1),
             **self._rss_parts(),
             "fds": len(os.listdir(f"/proc/{self.proc.pid}/fd")), "cpu": round(self.proc.cpu_seconds(), 2),
             "gen_cpu": round(sum(self._gen_cpu(p) for p in self.worker_pids), 2), **m}
        self.samples.append(s)
        return s


def fmt(s: dict[str, Any]) -> str:
    return (f"t={s['t']:7.1f}s RSS {s['rss_mib']:7.1f} MiB (anon {s.get('anon_mib', -1):6.1f}) fds {s['fds']:5d} tasks {s.get('tasks', -1):6.0f} "
            f"sessions {s.get('sessions', -1):5.0f} noise {s.get('noise', -1):5.0f} server CPU {s['cpu']:8.1f}s "
            f"loadgen CPU {s['gen_cpu']:8.1f}s {s['label']}")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from app.client.control import fetch_key

    r: dict[str, Any] = {"nodes": args.nodes, "rate": args.rate, "seconds": args.seconds}
    tmp = tempfile.TemporaryDirectory(prefix="soak-")
    d = tmp.name
    port, mport = free_port(), free_port()
    cfg = write_config(d, port, mport)
    log_path = os.path.join(d, "server.log")
    server, logf = start_server(server_command(cfg, None, None), log_path)
    pin(server.pid, 0)
    workers: Workers | None = None
    say = (lambda *a: print(*a, flush=True)) if not args.quiet else (lambda *a: None)
    try:
        sock = os.path.join(d, "headscale.sock")
        t_start = time.monotonic()
        while not os.path.exists(sock):
            if server.poll() is not None or time.monotonic() - t_start > 30:
                raise RuntimeError(f"server did not start; log: {read_text(log_path)[-2000:]}")
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
        status, user = await unix_request(sock, "POST", "/api/v1/user", {"name": "soak"})
        assert status == 200, (status, user)
        status, key = await unix_request(sock, "POST", "/api/v1/preauthkey", {"user": user["user"]["id"], "reusable": True})
        assert status == 200, (status, key)
        server_public = await fetch_key(HOST, port)
        await asyncio.sleep(1)

        ctx = mp.get_context("spawn")
        nw = max(1, min(args.workers, args.nodes))
        parts = [list(range(w, args.nodes, nw)) for w in range(nw)]
        observers = set(random.Random(args.seed).sample(range(args.nodes), min(args.observers, args.nodes)))
        procs, conns, owners = [], [], {}
        for w, idx in enumerate(parts):
            a, b = ctx.Pipe()
            p = ctx.Process(target=worker_main, daemon=True, args=(
                b, port, server_public, key["preAuthKey"]["key"], idx, sorted(observers & set(idx)), w, nw))
            p.start()
            pin(p.pid, 1)
            procs.append(p)
            conns.append(a)
            owners.update({i: w for i in idx})
        workers = Workers(procs, conns, owners)
        sampler = Sampler(server.pid, mport, [p.pid for p in procs])
        say(fmt(await sampler.sample("before nodes")))
        r["before"] = sampler.samples[-1]

        # 1. registration and map streams
        t0 = time.monotonic()
        regs = await workers.call("register", concurrency=args.register_concurrency)
        r["registration"] = {"seconds": time.monotonic() - t0, "failed": sum(g["failed"] for g in regs),
                             "errors": [e for g in regs for e in g["errors"]][:5]}
        keys = {int(i): k for g in regs for i, k in g["keys"].items()}
        say(f"registration: {args.nodes - r['registration']['failed']} ok in {r['registration']['seconds']:.1f} s")
        t0 = time.monotonic()
        got = await workers.call("stream", concurrency=args.stream_concurrency, timeout=args.stream_timeout)
        r["streams"] = {"seconds": time.monotonic() - t0, "connected": sum(g["streams"] for g in got),
                        "errors": [e for g in got for e in g["errors"]][:5]}
        say(f"map streams: {r['streams']['connected']} open in {r['streams']['seconds']:.1f} s")
        status, listed = await unix_request(sock, "GET", "/api/v1/node")
        assert status == 200, status
        by_key = {n["nodeKey"]: n for n in listed["nodes"]}
        ids = {i: int(by_key[k]["id"]) for i, k in keys.items() if k in by_key}
        names = {ids[i]: by_key[keys[i]]["givenName"] for i in ids}
        await asyncio.sleep(1)
        say(fmt(await sampler.sample("all connected")))
        r["connected"] = sampler.samples[-1]

        # 2. changes for the duration, sampled
        await workers.call("start", rate=args.rate / nw, churn_rate=args.churn / nw, seconds=args.seconds,
                           seed=args.seed)
        t_changes = time.monotonic()
        rnd = random.Random(args.seed)
        renames = rename_failed = 0
        next_sample = next_rename = t_changes
        warm: dict[str, Any] | None = None
        while (now := time.monotonic()) < t_changes + args.seconds:
            if args.rename_every > 0 and now >= next_rename:
                next_rename += args.rename_every
                nid = rnd.choice(list(names))
                new = f"soak-{nid}-r{renames}"
                status, _ = await unix_request(sock, "POST", f"/api/v1/node/{nid}/rename/{new}")
                if status == 200:
                    names[nid], renames = new, renames + 1
                else:
                    rename_failed += 1
            if now >= next_sample:
                next_sample += args.sample
                label = ""
                if warm is None and now - t_changes >= args.warmup:
                    label = "after warm-up"
                s = await sampler.sample(label)
                if label:
                    warm = s
                say(fmt(s))
            await asyncio.sleep(0.05)
        done = await workers.call("finish")
        t_end = time.monotonic()
        end = await sampler.sample("changes stopped")
        say(fmt(end))
        if warm is None:
            warm = sampler.samples[1] if len(sampler.samples) > 1 else end
        lat = [x for g in done for x in g["latencies"]]
        r["changes"] = {"fired": sum(g["fired"] for g in done), "acked": sum(g["acked"] for g in done),
                        "failed": sum(g["failed"] for g in done), "seconds": t_end - t_changes,
                        "ack_p50": percentile(lat, 50), "ack_p99": percentile(lat, 99),
                        "ack_max": max(lat, default=float("nan")),
                        "churned": sum(g["churned"] for g in done), "churn_failed": sum(g["churn_failed"] for g in done),
                        "renames": renames, "renames_failed": rename_failed,
                        "statuses": {str(k): v for g in done for k, v in g["statuses"].items()},
                        "skipped": sum(g["skipped"] for g in done), "in_flight_max": max(g["in_flight_max"] for g in done)}
        r["changes"]["rate"] = r["changes"]["acked"] / max(1e-9, args.seconds)

        # 3. quiescence: every observer's view equals the final state
        last = {int(i): m for g in done for i, m in g["last"].items()}
        unsure = {int(i): ms for g in done for i, ms in g["uncertain"].items()}
        expected = {ids[i]: [last.get(i, endpoints(i)[0]), names[ids[i]], keys[i]] for i in ids}
        uncertain = {ids[i]: ms for i, ms in unsure.items() if i in ids}
        t0 = time.monotonic()
        while True:
            checks = await workers.call("check", expected=expected, uncertain=uncertain)
            lost = sum(c["mismatches"] for c in checks)
            if lost == 0 or time.monotonic() - t0 > args.quiesce:
                break
            await asyncio.sleep(1)
        if args.debug_views and lost:
            print(json.dumps(checks, default=str)[:3000], flush=True)
        r["deltas"] = {"observers": sum(c["observers"] for c in checks), "peers": len(expected) - 1,
                       "lost": lost, "examples": [e for c in checks for e in c["examples"]][:5],
                       "anomalies": sum(c["anomalies"] for c in checks),
                       "self_patches": sum(c["self_patches"] for c in checks),
                       "anomaly_examples": [e for c in checks for e in c["anomaly_examples"]][:5], "converged_after": time.monotonic() - t0,
                       "uncertain_nodes": len(uncertain)}
        counts = await workers.call("count")
        r["connected_end"] = sum(c["streams"] for c in counts)
        r["broken_streams"] = sum(c["broken"] for c in counts)
        r["stream_errors"] = [e for c in counts for e in c["errors"]][:5]
        r["client_messages"] = sum(c["messages"] for c in counts)
        await asyncio.sleep(2)
        r["quiet"] = await sampler.sample("quiet")
        say(fmt(r["quiet"]))

        # 4. every node leaves; the server returns to where it was before they came
        await asyncio.wait_for(workers.call("stop"), 60)
        for p in procs:
            p.join(10)
        workers = None
        t0 = time.monotonic()
        while True:
            after = await sampler.sample("all disconnected")
            if (after.get("sessions", 1) == 0 and after["fds"] <= r["before"]["fds"] + 2
                    and after.get("tasks", 1e9) <= r["before"].get("tasks", 0) + 2) or time.monotonic() - t0 > 20:
                break
            await asyncio.sleep(1)
        say(fmt(after))
        r["after"] = after
        r["warm"] = warm
        r["end"] = end
        r["samples"] = sampler.samples
        r["server_alive"] = server.poll() is None
    finally:
        await stop_all(workers, server)
        logf.close()
        r["server_log_tracebacks"] = read_text(log_path).count("Traceback")
        if args.keep_log:
            import shutil

            shutil.copy(log_path, args.keep_log)
        tmp.cleanup()
    return r


def verdict(r: dict[str, Any], args: argparse.Namespace) -> list[str]:
    """The checks that failed, as sentences (empty: the soak passed)."""
    bad = []
    n, warm, end, after, before = args.nodes, r["warm"], r["end"], r["after"], r["before"]
    growth = (end["rss_mib"] - warm["rss_mib"]) / warm["rss_mib"] * 100
    r["rss_growth_percent"] = growth
    if r["registration"]["failed"]:
        bad.append(f"{r['registration']['failed']} registrations failed: {r['registration']['errors']}")
    if r["streams"]["connected"] != n or r["connected_end"] != n:
        bad.append(f"connected {r['streams']['connected']} at start, {r['connected_end']} at the end, of {n}: "
                   f"{r['stream_errors']}")
    if r["changes"]["rate"] < 0.9 * args.rate:
        bad.append(f"only {r['changes']['rate']:.1f} changes/s acknowledged of {args.rate}")
    if r["deltas"]["lost"] or r["deltas"]["anomalies"]:
        bad.append(f"lost deltas: {r['deltas']['lost']} peer views differ from the final state, "
                   f"{r['deltas']['anomalies']} patches for unknown peers; e.g. {r['deltas']['examples']} "
                   f"{r['deltas']['anomaly_examples']}")
    if growth >= args.rss_tolerance:
        bad.append(f"server RSS grew {growth:.1f}% after warm-up (limit {args.rss_tolerance}%)")
    if r["quiet"].get("sessions") != n:
        bad.append(f"{r['quiet'].get('sessions')} map sessions on the server for {n} connected nodes")
    for what in ("tasks", "fds"):
        if r["quiet"].get(what, 0) > warm.get(what, 0) + args.slack:
            bad.append(f"server {what} grew from {warm.get(what)} after warm-up to {r['quiet'].get(what)}")
        if after.get(what, 0) > before.get(what, 0) + args.slack:
            bad.append(f"server {what} {after.get(what)} after every node left, {before.get(what)} before any came")
    if after.get("sessions") != 0:
        bad.append(f"{after.get('sessions')} map sessions left after every node disconnected")
    if not r["server_alive"]:
        bad.append("the server exited during the soak")
    return bad


def report(r: dict[str, Any], bad: list[str]) -> None:
    c, dl = r["changes"], r["deltas"]
    print(f"\nsoak: {r['nodes']} nodes, {r['rate']} changes/s for {r['seconds']:.0f} s")
    print(f"registration {r['registration']['seconds']:.1f} s; map streams {r['streams']['seconds']:.1f} s "
          f"({r['streams']['connected']} connected, {r['connected_end']} at the end)")
    print(f"changes: {c['acked']} acknowledged of {c['fired']} fired ({c['failed']} failed) = {c['rate']:.1f}/s; "
          f"lite update answered p50 {c['ack_p50'] * 1000:.1f} ms, p99 {c['ack_p99'] * 1000:.1f} ms, "
          f"max {c['ack_max'] * 1000:.1f} ms, at most {c['in_flight_max']} in flight; {c['renames']} renames ({c['renames_failed']} failed); "
          f"{c['churned']} sessions churned ({c['churn_failed']} failed)")
    print(f"deltas: {dl['observers']} observers x {dl['peers']} peers checked: {dl['lost']} lost "
          f"(converged {dl['converged_after']:.1f} s after the last change; {dl['anomalies']} patches for unknown "
          f"peers, {dl['self_patches']} about the observer itself); {r['client_messages']} map messages received by all nodes")
    print("server RSS curve:")
    step = max(1, len(r["samples"]) // 40)
    for i, s in enumerate(r["samples"]):
        if i % step == 0 or s["label"]:
            print("  " + fmt(s))
    warm, end = r["warm"], r["end"]
    cpu = end["cpu"] - warm["cpu"]
    gen = end["gen_cpu"] - warm["gen_cpu"]
    wall = max(1e-9, end["t"] - warm["t"])
    print(f"after warm-up -> end: RSS {warm['rss_mib']:.1f} -> {end['rss_mib']:.1f} MiB "
          f"({r['rss_growth_percent']:+.2f}%); fds {warm['fds']} -> {end['fds']}; tasks {warm.get('tasks')} -> "
          f"{end.get('tasks')}; server CPU {cpu / wall * 100:.0f}%, load generator CPU {gen / wall * 100:.0f}%")
    print(f"before nodes -> after all left: fds {r['before']['fds']} -> {r['after']['fds']}; tasks "
          f"{r['before'].get('tasks')} -> {r['after'].get('tasks')}; sessions {r['after'].get('sessions')}; "
          f"tracebacks in the server log: {r['server_log_tracebacks']}")
    print("PASS" if not bad else "FAIL:\n  " + "\n  ".join(bad))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n")[0])
    p.add_argument("--nodes", type=int, default=1000)
    p.add_argument("--rate", type=float, default=100.0, help="endpoint changes per second")
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--seconds", type=float, help="duration in seconds (overrides --minutes)")
    p.add_argument("--warmup", type=float, default=60.0, help="seconds of changes before the RSS baseline")
    p.add_argument("--rss-tolerance", type=float, default=5.0, help="allowed RSS growth after warm-up, percent")
    p.add_argument("--slack", type=int, default=20, help="allowed growth of tasks and descriptors")
    p.add_argument("--observers", type=int, default=100, help="nodes whose view of every peer is checked")
    p.add_argument("--churn", type=float, default=0.5, help="sessions re-opened or reconnected per second")
    p.add_argument("--rename-every", type=float, default=2.0, help="seconds between node renames (0: none)")
    p.add_argument("--sample", type=float, default=5.0, help="seconds between samples")
    p.add_argument("--quiesce", type=float, default=60.0, help="seconds allowed for the views to converge")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--register-concurrency", type=int, default=16)
    p.add_argument("--stream-concurrency", type=int, default=64)
    p.add_argument("--stream-timeout", type=float, default=300.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep-log", metavar="FILE")
    p.add_argument("--json", metavar="FILE")
    p.add_argument("--debug-views", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--quiet", action="store_true", help="no live samples")
    args = p.parse_args(argv)
    args.seconds = args.seconds if args.seconds is not None else args.minutes * 60
    r = asyncio.run(run(args))
    bad = verdict(r, args)
    report(r, bad)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({**r, "failed": bad}, f, indent=1, default=str)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
