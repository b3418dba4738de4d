"""Control-plane benchmark: N simulated nodes against a real ``headscale serve`` on loopback.

    python -m bench.control_bench [--nodes 1000] [--duration 5] [--changes 5] [--workers 1]
                                  [--profile server.prof]

The server is started as its own process (``headscale serve -c <tmp config>``, pinned to one
CPU when the machine has two or more); the simulated nodes are our own protocol client
(``app.client.control.ControlClient``: /key, Noise, HTTP/2, register, map stream), run in
``--workers`` processes with one asyncio loop each, pinned to the other CPU. Phases:

1. registration: every node registers with one reusable pre-auth key (bcrypt-checked by the
   server, so slow by design); reported on its own.
2. ramp: every node opens its streaming map session; time from map request sent to the first
   (full) map received, p50/p99, and the size of that full map. Then the bench waits for the
   server to get quiet (the ramp's online and endpoint deltas delivered): ``"drained"``.
3. quiet first map: a few nodes re-open their stream one at a time while all others stay
   connected; the cost of one full map in an N-node tailnet without the ramp's contention.
4. hold: ``--duration`` seconds with every session open and nothing happening (idle cost).
5. change propagation: one node sends a lite update (``Stream=false, OmitPeers=true``) with a
   new endpoint; time until every other node has it as a PeersChangedPatch, ``--changes``
   times.
6. policy: ``policy set`` until every node has the new packet filter, ``--policy-changes`` times.
7. restart storm (``--restart``): the server is stopped and started again; every node
   reconnects at once (new Noise connection, retried until the server listens) and re-opens its
   map stream. JSON ``"restart": {"seconds": server start to the last first map, "connected",
   "p50", "p99"}`` (per node: server start to its first map).

``--only-register`` skips phases 2-6 (no map streams): registration, then the admin API
listing (``GET /api/v1/node``, ``headscale nodes list``) over every node.

Server RSS and CPU seconds are read from /proc at each phase. With ``--profile FILE`` the
server runs under cProfile (slower: use it to see where time goes, not for the figures) and
the top functions are printed at the end. Everything stops by itself (``--timeout``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import itertools
import json
import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")
HOST = "127.0.0.1"


# --- helpers ----------------------------------------------------------------------------------


class Proc:
    """CPU seconds and memory of a process, from /proc."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime

    def rss_mib(self) -> float:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return float("nan")


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(p / 100 * len(s)))]


def ms(v: float) -> str:
    return f"{v * 1000:.1f} ms"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def pin(pid: int, cpu: int) -> None:
    try:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) >= 2:
            os.sched_setaffinity(pid, {cpus[cpu % len(cpus)]})
    except (AttributeError, OSError):
        pass


async def unix_request(path: str, method: str, url: str, body: Any = None) -> tuple[int, Any]:
    """One HTTP/1.1 request to the REST API over the unix socket (trusted: no API key)."""
    reader, writer = await asyncio.open_unix_connection(path)
    data = json.dumps(body).encode() if body is not None else b""
    writer.write(
        f"{method} {url} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode() + data
    )
    await writer.drain()
    raw = await reader.read()
    writer.close()
    head, _, payload = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in head.lower():
        out, rest = b"", payload
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                break
            out, rest = out + rest[:size], rest[size + 2:]
        payload = out
    return status, json.loads(payload) if payload.strip() else None


def write_config(d: str, port: int, metrics_port: int) -> str:
    import yaml

    cfg = {
        "server_url": f"http://{HOST}:{port}",
        "listen_addr": f"{HOST}:{port}",
        "metrics_listen_addr": f"{HOST}:{metrics_port}",
        "noise": {"private_key_path": os.path.join(d, "noise_private.key")},
        "prefixes": {"v4": "100.64.0.0/10", "v6": "fd7a:115c:a1e0::/48", "allocation": "sequential"},
        "database": {"type": "sqlite", "sqlite": {"path": os.path.join(d, "db.sqlite")}},
        "derp": {"server": {"enabled": False}, "urls": [], "paths": [], "auto_update_enabled": False},
        "dns": {"magic_dns": True, "base_domain": "bench.internal", "override_local_dns": False},
        "unix_socket": os.path.join(d, "headscale.sock"),
        "unix_socket_permission": "0770",
        "policy": {"mode": "database"},
        "log": {"level": "info"},
        "disable_check_updates": True,
        # every simulated node connects from 127.0.0.1: no per-source connection cap
        # and the simulated clients keep their Noise connection between phases (no reconnects)
        "tuning": {"max_connections_per_source": 0, "noise_idle_timeout": "1h"},
    }
    path = os.path.join(d, "config.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(cfg, f)
    return path


class GcWatch:
    """Records garbage-collector pauses (monotonic start, seconds, generation)."""

    def __init__(self, min_pause: float = 0.005) -> None:
        self.min_pause = min_pause
        self.pauses: list[tuple[float, float, int]] = []
        self._start = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.monotonic()
        else:
            took = time.monotonic() - self._start
            if took >= self.min_pause:
                self.pauses.append((self._start, took, info["generation"]))


def server_command(cfg_path: str, profile: str | None, gc_log: str | None) -> list[str]:
    if profile or gc_log:
        return [sys.executable, "-m", "bench.control_bench", "--serve-wrapped", cfg_path, profile or "-",
                gc_log or "-"]
    exe = os.path.join(os.path.dirname(sys.executable), "headscale")
    if os.path.exists(exe):
        return [exe, "serve", "-c", cfg_path]
    return [sys.executable, "-m", "app", "serve", "-c", cfg_path]


def serve_wrapped(cfg_path: str, out: str, gc_log: str) -> int:
    """The server in-process, optionally under cProfile and with its GC pauses recorded.

    SIGUSR1 writes the profile of the phase named in ``<out>.phase`` to ``<out>.<phase>`` and
    starts a new one; the rest goes to ``out``. GC pauses go to ``gc_log`` (JSON) at exit."""
    import cProfile

    from app.main import main as headscale_main

    watch = GcWatch() if gc_log != "-" else None
    prof = cProfile.Profile() if out != "-" else None

    def next_phase(signum: int, frame: Any) -> None:
        nonlocal prof
        if prof is None:
            return
        prof.disable()
        with open(out + ".phase") as f:
            prof.dump_stats(f"{out}.{f.read().strip()}")
        prof = cProfile.Profile()
        prof.enable()

    def census(signum: int, frame: Any) -> None:
        import collections

        objs = gc.get_objects()
        top = collections.Counter(f"{type(o).__module__}.{type(o).__qualname__}" for o in objs).most_common(20)
        with open(gc_log + ".types", "w") as f:
            json.dump({"tracked": len(objs), "top": top}, f)

    signal.signal(signal.SIGUSR1, next_phase)
    if watch is not None:
        signal.signal(signal.SIGUSR2, census)
    if prof is not None:
        prof.enable()
    try:
        return headscale_main(["serve", "-c", cfg_path])
    finally:
        if prof is not None:
            prof.disable()
            prof.dump_stats(out)
        if watch is not None:
            with open(gc_log, "w") as f:
                json.dump(watch.pauses, f)


# --- the simulated nodes (worker processes) ----------------------------------------------------


def hostinfo(i: int) -> dict[str, Any]:
    return {
        "IPNVersion": "1.90.0-bench", "BackendLogID": f"{i:064x}", "OS": "linux", "OSVersion": "6.1.0",
        "Distro": "debian", "DistroVersion": "12", "Hostname": f"bench-{i:05d}", "GoArch": "amd64",
        "GoVersion": "go1.25.0", "Machine": "x86_64", "Userspace": False,
        "NetInfo": {"MappingVariesByDestIP": False, "WorkingUDP": True, "PreferredDERP": 1,
                    "DERPLatency": {"1-v4": 0.012}},
    }


def endpoints(i: int) -> list[str]:
    return [f"192.0.2.{i % 250 + 1}:{41641 + i // 250}", f"[2001:db8::{i:x}]:41641"]


@dataclass
class SimNode:
    index: int
    client: Any
    task: asyncio.Task | None = None
    sent_at: float = 0.0
    first_at: float | None = None
    first_size: int = 0
    first_raw: bytes | None = None
    messages: int = 0
    watch: bytes | None = None
    arrival: float | None = None
    arrival_kind: str = ""
    error: str = ""
    gen: int = 0                       # bumped when the stream is re-opened
    got_first: asyncio.Event = field(default_factory=asyncio.Event)


class Worker:
    def __init__(self, conn: Any, port: int, server_public: bytes, auth_key: str, indices: list[int]) -> None:
        self.conn = conn
        self.port = port
        self.server_public = server_public
        self.auth_key = auth_key
        self.indices = indices
        self.nodes: dict[int, SimNode] = {}
        self.got: asyncio.Event | None = None
        self.pending = 0
        self.gc = GcWatch()

    async def run(self) -> None:
        from app.client.control import ControlClient

        self.nodes = {i: SimNode(i, ControlClient(HOST, self.port)) for i in self.indices}
        loop = asyncio.get_running_loop()
        while True:
            cmd, arg = await loop.run_in_executor(None, self.conn.recv)
            if cmd == "stop":
                await self.stop()
                self.conn.send(None)
                return
            prof = _worker_profile(cmd)
            try:
                result = await getattr(self, "cmd_" + cmd)(**arg)
            finally:
                if prof is not None:
                    prof.disable()
                    prof.dump_stats(f"{os.environ['BENCH_WORKER_PROFILE']}.{cmd}.{os.getpid()}")
            self.conn.send(result)

    # registration: connect (Noise + HTTP/2) and register with the pre-auth key
    async def cmd_register(self, concurrency: int) -> dict[str, Any]:
        sem = asyncio.Semaphore(concurrency)
        times: list[float] = []
        errors: list[str] = []

        async def one(n: SimNode) -> None:
            async with sem:
                t0 = time.monotonic()
                try:
                    await n.client.connect(self.server_public)
                    out = await n.client.register(self.auth_key, hostinfo=hostinfo(n.index))
                    if out.get("Error") or not out.get("MachineAuthorized"):
                        raise RuntimeError(out.get("Error") or "not authorized")
                    times.append(time.monotonic() - t0)
                    if len(times) % 500 == 0:
                        # The registered clients live on: keep them out of later GC passes, or
                        # the load generator's own gen-2 pauses (over 1 s each at 10k clients)
                        # throttle the registration rate measured.
                        gc.freeze()
                except Exception as exc:  # noqa: BLE001 - counted and reported; the bench goes on
                    errors.append(f"node {n.index}: {exc!r}")

        await asyncio.gather(*(one(n) for n in self.nodes.values()))
        # Thousands of long-lived clients: keep them out of full GC passes from here on, so the
        # load generator's own pauses disturb the server's figures less.
        gc.collect()
        gc.freeze()
        return {"times": times, "errors": errors[:5], "failed": len(errors)}

    # map streams
    async def _read(self, n: SimNode) -> None:
        from app.core.map.wire import decompress

        gen = n.gen
        try:
            n.sent_at = time.monotonic()
            async for body in n.client.map_frames(Endpoints=endpoints(n.index)):
                now = time.monotonic()
                n.messages += 1
                if n.gen != gen:
                    continue    # the stream this one is being replaced by counts now
                if n.first_at is None:
                    n.first_at = now
                    n.first_size = len(body)
                    if n.index == self.indices[0]:
                        n.first_raw = body
                    n.got_first.set()
                    continue
                if n.watch is not None and n.arrival is None:
                    raw = decompress(body)
                    if n.watch in raw:
                        n.arrival = now
                        msg = json.loads(raw)
                        n.arrival_kind = ("patch" if any(
                            n.watch.decode().strip('"') in p.get("Endpoints", []) for p in msg.get("PeersChangedPatch", [])
                        ) else "peerschanged" if msg.get("PeersChanged") else "other")
                        self.pending -= 1
                        if self.pending <= 0 and self.got is not None:
                            self.got.set()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a broken stream is reported, not fatal
            if n.gen == gen:
                n.error = repr(exc)
        finally:
            if n.gen == gen:
                n.got_first.set()

    async def cmd_stream(self, concurrency: int, timeout: float) -> dict[str, Any]:
        sem = asyncio.Semaphore(concurrency)

        async def one(n: SimNode) -> None:
            async with sem:
                n.task = asyncio.create_task(self._read(n))
                await n.got_first.wait()

        t0 = time.monotonic()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(one(n) for n in self.nodes.values())), timeout)
        elapsed = time.monotonic() - t0
        # The clients' state is long-lived from here on: keep it out of later full GC passes, so
        # the load generator's own pauses disturb the propagation figures less.
        gc.collect()
        gc.freeze()
        ok = [n for n in self.nodes.values() if n.first_at is not None]
        sample = self.nodes[self.indices[0]].first_raw
        return {
            "latencies": [n.first_at - n.sent_at for n in ok],
            "sizes": [n.first_size for n in ok],
            "sample": sample,
            "connected": len(ok),
            "errors": [n.error for n in self.nodes.values() if n.error][:5],
            "elapsed": elapsed,
        }

    async def cmd_reopen(self, indices: list[int], gap: float) -> list[float]:
        """Re-open some nodes' streams one at a time (the new session replaces the old)."""
        out = []
        for i in indices:
            n = self.nodes[i]
            old = n.task
            n.gen += 1
            n.first_at, n.got_first = None, asyncio.Event()
            n.task = asyncio.create_task(self._read(n))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(n.got_first.wait(), 30)
            if n.first_at is not None:
                out.append(n.first_at - n.sent_at)
            if old is not None:
                old.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await old
            await asyncio.sleep(gap)
        return out

    async def cmd_restart(self, concurrency: int, timeout: float) -> dict[str, Any]:
        """The server was restarted: every node reconnects at once (new Noise connection, same
        keys; retried until the server listens) and re-opens its map stream."""
        from app.client.control import ControlClient

        for n in self.nodes.values():
            n.gen += 1
            if n.task is not None:
                n.task.cancel()
            with contextlib.suppress(Exception):
                await n.client.close()
        sem = asyncio.Semaphore(concurrency)
        deadline = time.monotonic() + timeout

        async def one(n: SimNode) -> None:
            old = n.client
            n.first_at, n.got_first, n.error = None, asyncio.Event(), ""
            async with sem:
                while time.monotonic() < deadline:
                    n.client = ControlClient(HOST, self.port, machine_private=old.machine_private,
                                             node_private=old.node_private, disco_private=old.disco_private)
                    try:
                        await asyncio.wait_for(n.client.connect(self.server_public), 30)
                        break
                    except (TimeoutError, OSError, asyncio.IncompleteReadError, ConnectionError):
                        with contextlib.suppress(Exception):
                            await n.client.close()
                        await asyncio.sleep(0.1)
                n.task = asyncio.create_task(self._read(n))
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(n.got_first.wait(), max(0.1, deadline - time.monotonic()))

        await asyncio.gather(*(one(n) for n in self.nodes.values()))
        ok = [n for n in self.nodes.values() if n.first_at is not None]
        return {"first": [n.first_at for n in ok], "connected": len(ok),
                "errors": [n.error for n in self.nodes.values() if n.error][:5]}

    async def cmd_count(self) -> dict[str, Any]:
        live = sum(1 for n in self.nodes.values() if n.task is not None and not n.task.done() and n.first_at)
        return {"streams": live, "messages": sum(n.messages for n in self.nodes.values()), "gc": self.gc.pauses}

    async def cmd_arm(self, marker: str, mover: int, raw: bool = False) -> int:
        """Watch every stream (but the mover's) for ``marker``, quoted unless ``raw``."""
        self.got = asyncio.Event()
        self.pending = 0
        for n in self.nodes.values():
            n.arrival, n.arrival_kind = None, ""
            n.watch = None
            if n.index != mover and n.task is not None and not n.task.done():
                n.watch = (marker if raw else f'"{marker}"').encode()
                self.pending += 1
        if self.pending == 0:
            self.got.set()
        return self.pending

    async def cmd_fire(self, mover: int, marker: str) -> dict[str, Any]:
        n = self.nodes[mover]
        t0 = time.monotonic()
        status = await n.client.lite_update(Endpoints=[marker] + endpoints(mover))
        return {"t0": t0, "status": status, "acked": time.monotonic() - t0}

    async def cmd_collect(self, timeout: float) -> dict[str, Any]:
        assert self.got is not None
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.got.wait(), timeout)
        armed = [n for n in self.nodes.values() if n.watch is not None]
        for n in armed:
            n.watch = None
        return {
            "arrivals": [n.arrival for n in armed if n.arrival is not None],
            "kinds": [n.arrival_kind for n in armed if n.arrival is not None],
            "missing": sum(1 for n in armed if n.arrival is None),
        }

    async def stop(self) -> None:
        for n in self.nodes.values():
            if n.task is not None:
                n.task.cancel()
        for n in self.nodes.values():
            if n.task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await n.task
            with contextlib.suppress(Exception):
                await n.client.close()


def _worker_profile(cmd: str) -> Any:
    """With BENCH_WORKER_PROFILE=<prefix> (and BENCH_WORKER_PROFILE_CMDS=restart,stream,...:
    which phases, default restart) a worker profiles those phases of the load generator to
    <prefix>.<phase>.<pid>: where the simulated nodes' own CPU goes."""
    if not os.environ.get("BENCH_WORKER_PROFILE"):
        return None
    if cmd not in os.environ.get("BENCH_WORKER_PROFILE_CMDS", "restart").split(","):
        return None
    import cProfile

    prof = cProfile.Profile()
    prof.enable()
    return prof


def worker_main(conn: Any, port: int, server_public: bytes, auth_key: str, indices: list[int]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the orchestrator decides when to stop
    # Thousands of simulated nodes churn through buffers and h2 events: with the default
    # thresholds the load generator spent ~12 s of a 4,000-node storm in GC pauses, which
    # showed up as server latency. Collect young objects rarely, old ones almost never.
    gc.set_threshold(50_000, 50, 1_000)
    asyncio.run(Worker(conn, port, server_public, auth_key, indices).run())


# --- the orchestrator -----------------------------------------------------------------------------


class Workers:
    def __init__(self, procs: list[Any], conns: list[Any], owners: dict[int, int]) -> None:
        self.procs, self.conns, self.owners = procs, conns, owners

    async def call(self, cmd: str, targets: list[int] | None = None, **arg: Any) -> list[Any]:
        loop = asyncio.get_running_loop()
        ids = range(len(self.conns)) if targets is None else targets
        for w in ids:
            self.conns[w].send((cmd, arg))
        return list(await asyncio.gather(*(loop.run_in_executor(None, self.conns[w].recv) for w in ids)))


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from app.client.control import fetch_key
    from app.core.map.wire import decompress

    deadline = time.monotonic() + args.timeout
    results: dict[str, Any] = {"nodes": args.nodes}
    tmp = tempfile.TemporaryDirectory(prefix="control-bench-")
    d = tmp.name
    port, mport = free_port(), free_port()
    cfg_path = write_config(d, port, mport)
    log_path = os.path.join(d, "server.log")
    gc_log = os.path.join(d, "gc.json") if args.gc else None
    server, logf = start_server(server_command(cfg_path, args.profile, gc_log), log_path)
    pin(server.pid, 0)
    proc = Proc(server.pid)
    workers: Workers | None = None
    restarted = False     # the restarted server writes one profile, at exit

    def phase(name: str) -> None:
        gen = sum(Proc(p.pid).cpu_seconds() for p in workers.procs) if workers is not None else 0.0
        results.setdefault("server", []).append(
            (name, proc.rss_mib(), proc.cpu_seconds(), time.monotonic(), gen))
        if args.profile and not restarted:   # the profiled server writes what it did since the last phase to <profile>.<name>
            with open(args.profile + ".phase", "w") as f:
                f.write(name)
            server.send_signal(signal.SIGUSR1)

    def left() -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("benchmark --timeout reached")
        return remaining

    try:
        sock = os.path.join(d, "headscale.sock")
        while not os.path.exists(sock):
            if server.poll() is not None:
                raise RuntimeError(f"server exited with {server.returncode}; log: {read_text(log_path)[-2000:]}")
            if time.monotonic() > deadline - args.timeout + 30:
                raise RuntimeError("server did not start within 30 s")
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
        status, user = await unix_request(sock, "POST", "/api/v1/user", {"name": "bench"})
        assert status == 200, (status, user)
        status, key = await unix_request(sock, "POST", "/api/v1/preauthkey",
                                         {"user": user["user"]["id"], "reusable": True})
        assert status == 200, (status, key)
        auth_key = key["preAuthKey"]["key"]
        server_public = await fetch_key(HOST, port)
        phase("idle")

        # workers
        ctx = mp.get_context("spawn")
        nw = max(1, min(args.workers, args.nodes))
        parts = [list(range(w, args.nodes, nw)) for w in range(nw)]
        procs, conns, owners = [], [], {}
        for w, idx in enumerate(parts):
            a, b = ctx.Pipe()
            p = ctx.Process(target=worker_main, args=(b, port, server_public, auth_key, idx), daemon=True)
            p.start()
            pin(p.pid, 1)
            procs.append(p)
            conns.append(a)
            for i in idx:
                owners[i] = w
        workers = Workers(procs, conns, owners)

        # 1. registration
        t0 = time.monotonic()
        regs = await asyncio.wait_for(workers.call("register", concurrency=args.register_concurrency), left())
        reg_time = time.monotonic() - t0
        times = [t for r in regs for t in r["times"]]
        failed = sum(r["failed"] for r in regs)
        results["registration"] = {"seconds": reg_time, "ok": len(times), "failed": failed,
                                   "p50": percentile(times, 50), "p99": percentile(times, 99),
                                   "errors": [e for r in regs for e in r["errors"]][:5]}
        phase("registered")
        if failed:
            print(f"warning: {failed} registrations failed: {results['registration']['errors']}", flush=True)

        if not args.only_register:   # phases 2-6 need every map stream open
            # 2. ramp: every node opens its map stream
            t0 = time.monotonic()
            streams = await asyncio.wait_for(
                workers.call("stream", concurrency=args.stream_concurrency, timeout=min(left(), args.stream_timeout)),
                left() + 5)
            lat = [t for r in streams for t in r["latencies"]]
            sizes = [s for r in streams for s in r["sizes"]]
            sample = next((r["sample"] for r in streams if r["sample"]), None)
            raw = decompress(sample) if sample else b""
            peers = len(json.loads(raw).get("Peers") or []) if raw else 0
            results["ramp"] = {"seconds": time.monotonic() - t0, "connected": sum(r["connected"] for r in streams),
                               "p50": percentile(lat, 50), "p99": percentile(lat, 99), "max": max(lat, default=0),
                               "errors": [e for r in streams for e in r["errors"]][:5]}
            results["full_map"] = {"compressed": max(sizes, default=0), "raw": len(raw), "peers": peers}
            # let the ramp's online/endpoint deltas drain: the quiet first map is measured in a
            # quiet tailnet, and how long the server took to get quiet is a figure of its own
            results["ramp"]["drained"] = await until_quiet(Proc(server.pid), args.settle)
            phase("connected")

            # 3. quiet first map: re-open a few streams one by one
            sample_ids = list(range(0, args.nodes, max(1, args.nodes // args.reopen)))[: args.reopen]
            quiet: list[float] = []
            for i in sample_ids:
                w = workers.owners[i]
                quiet += (await asyncio.wait_for(workers.call("reopen", [w], indices=[i], gap=0.05), left()))[0]
            results["quiet_first_map"] = {"n": len(quiet), "p50": percentile(quiet, 50), "p99": percentile(quiet, 99),
                                          "max": max(quiet, default=0)}
            await asyncio.sleep(0.3)
            phase("reopened")

            # 4. hold
            await asyncio.sleep(min(args.duration, left()))
            phase("held")

            # 5. change propagation
            mover = 0
            all_lat: list[float] = []
            per_rep = []
            kinds: dict[str, int] = {}
            missing = 0
            for rep in range(args.changes):
                marker = f"203.0.113.{rep % 250 + 1}:{50000 + rep}"
                await workers.call("arm", marker=marker, mover=mover)
                fired = (await workers.call("fire", [workers.owners[mover]], mover=mover, marker=marker))[0]
                got = await asyncio.wait_for(workers.call("collect", timeout=min(10.0, left())), left() + 15)
                rep_lat = [a - fired["t0"] for r in got for a in r["arrivals"]]
                for r in got:
                    missing += r["missing"]
                    for k in r["kinds"]:
                        kinds[k] = kinds.get(k, 0) + 1
                all_lat += rep_lat
                per_rep.append((len(rep_lat), min(rep_lat, default=float("nan")), percentile(rep_lat, 50),
                                max(rep_lat, default=float("nan")), fired["acked"]))
                await asyncio.sleep(args.change_gap)
            results["propagation"] = {"p50": percentile(all_lat, 50), "p99": percentile(all_lat, 99),
                                      "max": max(all_lat, default=float("nan")), "per_rep": per_rep,
                                      "kinds": kinds, "missing": missing, "receivers": max(0, args.nodes - 1)}
            # 6. policy delivery: `policy set` to the last node's new packet filter
            pol_lat: list[float] = []
            pol_reps = []
            pol_missing = 0
            for rep in range(args.policy_changes):
                port_no = 40000 + rep
                await workers.call("arm", marker=f'"Ports":{{"First":{port_no},"Last":{port_no}}}', mover=-1, raw=True)
                policy = {"acls": [{"action": "accept", "src": ["*"], "dst": [f"*:{port_no}"]}]}
                t0 = time.monotonic()
                status, body = await unix_request(sock, "PUT", "/api/v1/policy", {"policy": json.dumps(policy)})
                answered = time.monotonic() - t0
                assert status == 200, (status, body)
                got = await asyncio.wait_for(workers.call("collect", timeout=min(10.0, left())), left() + 15)
                rep_lat = [a - t0 for r in got for a in r["arrivals"]]
                pol_missing += sum(r["missing"] for r in got)
                pol_lat += rep_lat
                pol_reps.append((len(rep_lat), percentile(rep_lat, 50), max(rep_lat, default=float("nan")), answered))
                await asyncio.sleep(args.change_gap)
            results["policy"] = {"p50": percentile(pol_lat, 50), "p99": percentile(pol_lat, 99),
                                 "max": max(pol_lat, default=float("nan")), "per_rep": pol_reps,
                                 "missing": pol_missing}
            phase("policy")

        # 6b. the admin API and CLI over every node
        t0 = time.monotonic()
        status, listed = await unix_request(sock, "GET", "/api/v1/node")
        api_s = time.monotonic() - t0
        assert status == 200 and len(listed["nodes"]) == args.nodes, status
        exe = os.path.join(os.path.dirname(sys.executable), "headscale")
        t0 = time.monotonic()
        cli = await asyncio.create_subprocess_exec(exe, "-c", cfg_path, "nodes", "list",
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await cli.communicate()
        cli_s = time.monotonic() - t0
        results["api"] = {"get_node_seconds": api_s, "nodes_list_seconds": cli_s, "nodes_list_rc": cli.returncode,
                          "nodes_list_lines": out.count(b"\n"), "nodes_list_error": err.decode()[-300:]}

        # 7. restart storm: stop the server, start it, every node reconnects at once
        if args.restart:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(120)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
            logf.close()
            t_start, wall_start = time.monotonic(), time.time()
            restarted = True
            restart_prof = args.profile + ".restart" if args.profile else None
            server, logf = start_server(server_command(cfg_path, restart_prof, gc_log), log_path + ".restart")
            pin(server.pid, 0)
            proc = Proc(server.pid)
            got = await asyncio.wait_for(
                workers.call("restart", concurrency=args.restart_concurrency, timeout=min(left(), args.stream_timeout)),
                left() + 15)
            first = [t - t_start for r in got for t in r["first"]]
            results["restart"] = {"seconds": max(first, default=float("nan")),
                                  "connected": sum(r["connected"] for r in got),
                                  "p50": percentile(first, 50), "p99": percentile(first, 99),
                                  "server_cpu": proc.cpu_seconds(),
                                  "listening": listening_after(log_path + ".restart", wall_start),
                                  "errors": [e for r in got for e in r["errors"]][:5]}
            await asyncio.sleep(max(0.5, args.settle))
            phase("restarted")

        counts = await workers.call("count")
        results["connected_end"] = sum(c["streams"] for c in counts)
        results["gc_workers"] = [p for c in counts for p in c["gc"]]
        results["client_messages"] = sum(c["messages"] for c in counts)
        phase("end")
        if gc_log:
            server.send_signal(signal.SIGUSR2)
            await asyncio.sleep(3)
        results["metrics"] = scrape_metrics(mport)
    finally:
        await stop_all(workers, server, 60 if args.profile else 15)
        logf.close()
        if gc_log and os.path.exists(gc_log):
            results["gc_server"] = json.loads(read_text(gc_log))
        if gc_log and os.path.exists(gc_log + ".types"):
            results["gc_census"] = json.loads(read_text(gc_log + ".types"))
        if args.keep_log:
            import shutil

            shutil.copy(log_path, args.keep_log)
            if os.path.exists(log_path + ".restart"):
                shutil.copy(log_path + ".restart", args.keep_log + ".restart")
        tmp.cleanup()
    return results


async def stop_all(workers: Workers | None, server: subprocess.Popen, server_wait: float = 15) -> None:
    """Stop the worker processes, then the server: SIGTERM, SIGKILL after ``server_wait`` s."""
    if workers is not None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(workers.call("stop"), 20)
        for p in workers.procs:
            p.join(5)
            if p.is_alive():
                p.kill()
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(server_wait)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


async def until_quiet(proc: Proc, settle: float, cap: float = 120.0) -> float:
    """Wait at least ``settle`` seconds and until the server used under 5% of a core over a
    quarter second (at most ``cap`` seconds); the seconds waited."""
    t0 = time.monotonic()
    await asyncio.sleep(max(0.5, settle))
    while time.monotonic() - t0 < cap:
        before = proc.cpu_seconds()
        await asyncio.sleep(0.25)
        if proc.cpu_seconds() - before < 0.0125:
            break
    return time.monotonic() - t0


def listening_after(log_path: str, wall_start: float) -> float | None:
    """Seconds from ``wall_start`` to the server's "listening on" log line (its text format
    starts with the local time to the millisecond), or None if there is none."""
    for line in read_text(log_path).splitlines():
        if " listening on " in line:
            try:
                at = time.mktime(time.strptime(line[:19], "%Y-%m-%d %H:%M:%S")) + int(line[20:23]) / 1000
            except ValueError:
                return None
            return round(at - wall_start, 3)
    return None


def start_server(cmd: list[str], log_path: str) -> tuple[subprocess.Popen, Any]:
    logf = open(log_path, "wb")  # noqa: SIM115 - open for the server's whole life, closed by run()
    return subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, cwd=os.getcwd()), logf


def read_text(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def scrape_metrics(port: int) -> dict[str, float]:
    import urllib.request

    out: dict[str, float] = {}
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return out
    for line in text.splitlines():
        if line.startswith(("headscale_mapresponse_sent_total", "headscale_map_sessions ",
                            "headscale_first_map_seconds_sum", "headscale_first_map_seconds_count")):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def report(r: dict[str, Any]) -> None:
    reg = r["registration"]
    print(f"control bench: {r['nodes']} nodes")
    print(f"registration: {reg['ok']} ok, {reg['failed']} failed in {reg['seconds']:.1f} s "
          f"({reg['ok'] / max(reg['seconds'], 1e-9):.1f}/s; per node p50 {ms(reg['p50'])}, p99 {ms(reg['p99'])})")
    if "ramp" in r:   # not with --only-register
        ramp, fm, q, pr = r["ramp"], r["full_map"], r["quiet_first_map"], r["propagation"]
        print(f"nodes connected: {ramp['connected']} (streaming map sessions open at the end: {r['connected_end']})")
        print(f"ramp: all streams opened in {ramp['seconds']:.1f} s; first full map p50 {ms(ramp['p50'])}, "
              f"p99 {ms(ramp['p99'])}, max {ms(ramp['max'])}; server quiet {ramp['drained']:.1f} s later")
        print(f"first full map, quiet ({q['n']} re-opened one at a time): p50 {ms(q['p50'])}, p99 {ms(q['p99'])}, "
              f"max {ms(q['max'])}")
        print(f"full map size: {fm['compressed'] / 1024:.1f} KiB zstd, {fm['raw'] / 1024:.1f} KiB JSON, "
              f"{fm['peers']} peers")
        print(f"change propagation ({len(pr['per_rep'])} changes x {pr['receivers']} receivers): "
              f"p50 {ms(pr['p50'])}, p99 {ms(pr['p99'])}, max {ms(pr['max'])}; missing {pr['missing']}; "
              f"arrived as {pr['kinds']}")
        for i, (n, first, p50, mx, acked) in enumerate(pr["per_rep"]):
            print(f"  change {i + 1}: {n} receivers, first {ms(first)}, p50 {ms(p50)}, last {ms(mx)} "
                  f"(lite update answered in {ms(acked)})")
    po = r.get("policy")
    if po and po["per_rep"]:
        print(f"policy set -> new filter at every node ({len(po['per_rep'])} policies x {r['nodes']} nodes): "
              f"p50 {ms(po['p50'])}, p99 {ms(po['p99'])}, last {ms(po['max'])}; missing {po['missing']}")
        for i, (n, p50, mx, answered) in enumerate(po["per_rep"]):
            print(f"  policy {i + 1}: {n} nodes, p50 {ms(p50)}, last {ms(mx)} (PUT answered in {ms(answered)})")
    api = r.get("api")
    if api:
        print(f"GET /api/v1/node over {r['nodes']} nodes: {ms(api['get_node_seconds'])}; `headscale nodes list`: "
              f"{ms(api['nodes_list_seconds'])} (exit {api['nodes_list_rc']}, {api['nodes_list_lines']} lines)")
    rs = r.get("restart")
    if rs:
        print(f"restart storm: {rs['connected']} of {r['nodes']} nodes had their first full map "
              f"{rs['seconds']:.1f} s after the server started; per node p50 {rs['p50']:.1f} s, "
              f"p99 {rs['p99']:.1f} s; restarted server CPU {rs['server_cpu']:.1f} s; errors {rs['errors']}")
        if rs.get("listening") is not None:
            print(f"  the restarted server was listening {rs['listening']:.1f} s after it started")
    prev = None
    print("server (and load generator CPU):")
    for name, rss, cpu, t, gen in r["server"]:
        extra = ""
        if prev is not None:
            extra = (f"  (+{cpu - prev[2]:.2f} CPU s over {t - prev[3]:.1f} s wall; "
                     f"load generator +{gen - prev[4]:.2f} CPU s)")
        print(f"  {name:<11} RSS {rss:7.1f} MiB  CPU {cpu:7.2f} s{extra}")
        prev = (name, rss, cpu, t, gen)
    for who in ("server", "workers"):
        pauses = r.get("gc_" + who)
        if pauses is None:
            continue
        print(f"GC pauses >= 5 ms, {who}, by phase:")
        bounds = r["server"]
        for (_, _, _, t_a, _), (name, _, _, t_b, _) in itertools.pairwise(bounds):
            inside = [p for p in pauses if t_a <= p[0] < t_b]
            if inside:
                print(f"  {name:<11} {len(inside)} pauses, total {ms(sum(p[1] for p in inside))}, "
                      f"max {ms(max(p[1] for p in inside))} (gen2: {sum(1 for p in inside if p[2] == 2)})")
    census = r.get("gc_census")
    if census:
        print(f"server objects tracked by the GC at the end: {census['tracked']}; most common:")
        for name, count in census["top"][:12]:
            print(f"  {count:9d} {name}")
    m = r.get("metrics") or {}
    if m:
        cnt = m.get("headscale_first_map_seconds_count", 0)
        if cnt:
            print(f"  server-side full map build+send mean {ms(m['headscale_first_map_seconds_sum'] / cnt)} "
                  f"over {int(cnt)} maps")
        sent = {k.split('"')[1]: int(v) for k, v in m.items() if k.startswith("headscale_mapresponse_sent_total")}
        print(f"  map responses sent: {sent}; client messages received: {r['client_messages']}")


def print_profile(path: str, top: int) -> None:
    """Own-time top functions of the server, per phase (files written by serve_wrapped)."""
    import pstats

    for name, what in (("registered", "registration"), ("connected", "ramp (full maps)"),
                       ("end", "change propagation"), ("restart", "restart storm (whole restarted server)")):
        part = f"{path}.{name}"
        if not os.path.exists(part):
            continue
        print(f"\nserver profile, {what} ({part}): top {top} by own time")
        st = pstats.Stats(part, stream=sys.stdout)
        st.strip_dirs().sort_stats("tottime").print_stats(top)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.control_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds to hold all sessions idle")
    parser.add_argument("--changes", type=int, default=5, help="endpoint changes to propagate")
    parser.add_argument("--change-gap", type=float, default=0.5)
    parser.add_argument("--policy-changes", type=int, default=3, help="policies set, timed to the last node's delta")
    parser.add_argument("--workers", type=int, default=1, help="load generator processes")
    parser.add_argument("--register-concurrency", type=int, default=16)
    parser.add_argument("--stream-concurrency", type=int, default=64)
    parser.add_argument("--stream-timeout", type=float, default=300.0)
    parser.add_argument("--reopen", type=int, default=20, help="streams re-opened one by one (quiet first map)")
    parser.add_argument("--settle", type=float, default=2.0)
    parser.add_argument("--timeout", type=float, default=1200.0, help="stop everything after this many seconds")
    parser.add_argument("--profile", metavar="FILE", help="run the server under cProfile, write stats to FILE")
    parser.add_argument("--profile-top", type=int, default=30)
    parser.add_argument("--keep-log", metavar="FILE", help="copy the server log to FILE")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--restart", action="store_true",
                        help="finally restart the server; every node reconnects at once (restart storm)")
    parser.add_argument("--restart-concurrency", type=int, default=1000,
                        help="reconnecting nodes in flight per load generator process")
    parser.add_argument("--gc", action="store_true", help="record GC pauses of the server and the load generator")
    parser.add_argument("--only-register", action="store_true",
                        help="skip phases 2-6 (map streams): registration, then the admin API over every node")
    parser.add_argument("--serve-wrapped", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_wrapped:
        return serve_wrapped(*args.serve_wrapped)
    if args.profile:
        args.profile = os.path.abspath(args.profile)
    results = asyncio.run(run(args))
    report(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({k: v for k, v in results.items() if k != "sample"}, f, indent=1, default=str)
    if args.profile:
        print_profile(args.profile, args.profile_top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
