"""DERP relay benchmark: two of our clients relaying through a DerpServer on loopback.

    python -m bench.derp_bench [--size 1200] [--packets 200000] [--rate 20000] [--seconds 5]

The server runs in its own process (pinned to one CPU when the machine has two or more), so
its CPU seconds and RSS are measured alone; both clients share one event loop in this process
(pinned to another CPU). Phases:

1. flood: the sender writes as fast as TCP lets it; delivered packets/s and drops.
2. windowed: at most ``--window`` packets in flight (below the per-client queue bound), so the
   figure is lossless relay throughput.
3. latency: a paced sender at ``--rate`` packets/s for ``--seconds``; one-way latency p50/p99
   (send timestamp inside each packet; both ends share the host's monotonic clock).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import struct
import subprocess
import sys
import time

from app.core.derp.frames import KEY_LEN, FrameType
from tests.derp_client import DerpClient, serve_derp

CLK_TCK = os.sysconf("SC_CLK_TCK")
STAMP = struct.Struct(">QQ")  # sequence number, send time (monotonic ns)


# --- the server process ---------------------------------------------------------------------


async def _serve() -> None:
    from app.server.derp_conn import DerpServer  # imported here so the client side stays light

    server = DerpServer(os.urandom(32))
    listener = await serve_derp(server, "127.0.0.1", 0)
    print(listener.sockets[0].getsockname()[1], flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    s = server.stats()
    print(f"server stats: relayed={s['packets_relayed']} dropped={s['packets_dropped']}", file=sys.stderr)


# --- measurements ---------------------------------------------------------------------------


class Proc:
    """CPU seconds and memory of a process, from /proc."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime

    def memory_kib(self) -> dict[str, int]:
        out = {}
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                name, _, value = line.partition(":")
                if name in ("VmRSS", "VmHWM"):
                    out[name] = int(value.split()[0])
        return out


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(p / 100 * len(sorted_values)))]


class Receiver:
    """Counts (and optionally time-stamps) packets, a whole read at a time."""

    def __init__(self, client: DerpClient, latencies: list[float] | None = None) -> None:
        self.client = client
        self.count = 0
        self.last = time.perf_counter()
        self.latencies = latencies
        self.progress = asyncio.Event()  # set whenever packets arrive (the windowed sender waits on it)

    async def run(self, stop: asyncio.Event) -> None:
        while True:
            try:
                batch = await self.client.recv_frames(timeout=0.5 if stop.is_set() else None)
            except TimeoutError:
                return  # the sender is done and nothing arrived for 0.5 s
            now_ns = time.monotonic_ns()
            self.last = time.perf_counter()
            self.progress.set()
            for frame in batch:
                if frame.type is FrameType.RECV_PACKET:
                    self.count += 1
                    if self.latencies is not None:
                        self.latencies.append((now_ns - STAMP.unpack_from(frame.payload, KEY_LEN)[1]) / 1e6)


async def flood(
    sender: DerpClient, receiver: DerpClient, packets: int, size: int, window: int | None
) -> dict:
    rx = Receiver(receiver)
    stop = asyncio.Event()
    task = asyncio.create_task(rx.run(stop))
    pad = bytes(size - STAMP.size)
    dst = receiver.public_key
    batch = 32 if window is None else min(32, max(1, window // 2))
    start = time.perf_counter()
    for i in range(0, packets, batch):
        if window is not None:
            while i + batch - rx.count > window:
                rx.progress.clear()
                await rx.progress.wait()
        sender.send_many_nowait(dst, [STAMP.pack(j, 0) + pad for j in range(i, min(packets, i + batch))])
        await sender.writer.drain()
        await asyncio.sleep(0)
    await sender.writer.drain()
    stop.set()
    await task
    return {"sent": packets, "received": rx.count, "seconds": rx.last - start}


async def paced(sender: DerpClient, receiver: DerpClient, rate: int, seconds: float, size: int) -> dict:
    latencies: list[float] = []
    rx = Receiver(receiver, latencies)
    stop = asyncio.Event()
    task = asyncio.create_task(rx.run(stop))
    pad = bytes(size - STAMP.size)
    dst = receiver.public_key
    start = time.perf_counter()
    sent = 0
    while (elapsed := time.perf_counter() - start) < seconds:
        due = int(elapsed * rate)
        if due > sent:
            now_ns = time.monotonic_ns()
            sender.send_many_nowait(dst, [STAMP.pack(seq, now_ns) + pad for seq in range(sent, due)])
            sent = due
        await sender.writer.drain()
        await asyncio.sleep(0.0005)
    stop.set()
    await task
    latencies.sort()
    return {
        "sent": sent,
        "received": rx.count,
        "seconds": seconds,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "max_ms": latencies[-1] if latencies else float("nan"),
    }


# --- driver ---------------------------------------------------------------------------------


def _pin(pid: int, cpu: int) -> bool:
    try:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            return False
        os.sched_setaffinity(pid, {cpus[cpu % len(cpus)]})
        return True
    except (AttributeError, OSError):
        return False


def _report(name: str, r: dict, cpu: float, size: int) -> None:
    pps = r["received"] / r["seconds"]
    line = (
        f"{name:9s} sent={r['sent']:>8d} received={r['received']:>8d} "
        f"({100 * (1 - r['received'] / max(1, r['sent'])):.1f}% dropped)  "
        f"{pps:>9,.0f} packets/s  {pps * size / 1e6:6.1f} MB/s  "
        f"server CPU {cpu:.2f}s ({100 * cpu / r['seconds']:.0f}% of one core, "
        f"{r['received'] / cpu if cpu else float('nan'):,.0f} packets per CPU-second)"
    )
    print(line)
    if "p50_ms" in r:
        print(f"{'':9s} latency p50={r['p50_ms']:.3f} ms  p99={r['p99_ms']:.3f} ms  max={r['max_ms']:.3f} ms")


def _start_server(args: argparse.Namespace) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.derp_bench", "--serve"]
        + (["--profile", args.profile] if args.profile else []),
        stdout=subprocess.PIPE,
        text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    return proc, int(proc.stdout.readline())


async def run(args: argparse.Namespace, proc: subprocess.Popen, port: int) -> None:
    pinned = _pin(proc.pid, 0) and _pin(0, 1)
    server = Proc(proc.pid)
    sender = await DerpClient.connect("127.0.0.1", port)
    receiver = await DerpClient.connect("127.0.0.1", port)
    await sender.send(receiver.public_key, STAMP.pack(0, 0))  # warm up the path
    await receiver.recv_packet()
    print(
        f"DERP relay bench: {args.size}-byte packets over loopback; server pid {proc.pid}"
        f"{' pinned to its own CPU' if pinned else ' (not pinned: one CPU only)'}; "
        f"server RSS at start {server.memory_kib()['VmRSS'] / 1024:.1f} MiB"
    )
    for name, coro in (
        ("flood", lambda: flood(sender, receiver, args.packets, args.size, None)),
        ("windowed", lambda: flood(sender, receiver, args.packets, args.size, args.window)),
        ("latency", lambda: paced(sender, receiver, args.rate, args.seconds, args.size)),
    ):
        cpu0 = server.cpu_seconds()
        result = await coro()
        _report(name, result, server.cpu_seconds() - cpu0, args.size)
    mem = server.memory_kib()
    print(f"server memory: RSS {mem['VmRSS'] / 1024:.1f} MiB, peak RSS {mem['VmHWM'] / 1024:.1f} MiB")
    sender.abort()
    receiver.abort()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.derp_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=1200, help="packet size in bytes (default 1200)")
    parser.add_argument("--packets", type=int, default=200_000, help="packets per throughput phase")
    parser.add_argument("--window", type=int, default=96, help="in-flight packets in the windowed phase")
    parser.add_argument("--rate", type=int, default=20_000, help="packets/s in the latency phase")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of the latency phase")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--profile", metavar="FILE", help="write a cProfile of the server process to FILE")
    args = parser.parse_args(argv)
    if args.size < STAMP.size or args.size > 64 << 10:
        parser.error(f"--size must be between {STAMP.size} and 65536")
    if args.serve and args.profile:
        import cProfile

        cProfile.runctx("asyncio.run(_serve())", globals(), {"_serve": _serve}, args.profile)
        return
    if args.serve:
        asyncio.run(_serve())
        return
    proc, port = _start_server(args)
    try:
        asyncio.run(run(args, proc, port))
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
