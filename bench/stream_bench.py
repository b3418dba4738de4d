"""Per-message CPU of map stream writes and reads, without the rest of the server.

    python -m bench.stream_bench [--streams 2000] [--rounds 6] [--size 200] [--client-profile FILE]

A server process (pinned to CPU 0) accepts TS2021 connections with the real ``TS2021`` and
``H2Server``; each ``POST /machine/map`` stream is fed from a queue as ``ControlRoutes.stream``
feeds it (``_DirectQueue``: written at once by whoever queues while the stream is idle, else by
the stream's task; ``--queued``: always by the task). A client process (pinned to CPU 1) opens ``--streams`` map streams with the
real ``ControlClient`` (the bench's simulated nodes). Each round puts one ``--size``-byte message
on every stream and waits until every client has read it; the CPU seconds of each process over
the round, divided by the streams, are the per-message costs (kernel time included: the socket
send and receive are most of them). No policy, no state, no batcher: only the write path.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import time
from typing import Any

HOST = "127.0.0.1"


def _pin(cpu: int) -> None:
    try:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) >= 2:
            os.sched_setaffinity(0, {cpus[cpu % len(cpus)]})
    except (AttributeError, OSError):
        pass


def server_main(conn: Any, port_out: Any, size: int, queued: bool) -> None:
    from app.core import keys
    from app.core.map.wire import frame
    from app.core.noise.symmetric import private_key, public_bytes
    from app.server.control_routes import _DirectQueue
    from app.server.edge import parse_head
    from app.server.ts2021 import TS2021

    _pin(0)
    private = keys.new_private()
    queues: list[_DirectQueue] = []
    sent = [0]

    def routes_for(machine_key: str, version: int):
        async def handle(req, resp) -> None:
            if req.path != "/machine/map":
                return await resp.simple(404)
            await resp.start(200, [("content-type", "application/json")])
            queue = _DirectQueue()
            queues.append(queue)

            def write_now(item: bytes) -> bool:
                if resp.try_send(item):
                    sent[0] += 1
                    return True
                return False

            while True:
                queue.write_now = None if queued else write_now
                try:
                    item = await queue.get()
                finally:
                    queue.write_now = None
                await resp.send(item)
                sent[0] += 1
        return handle

    ts = TS2021(private, routes_for, idle_timeout=3600)

    async def on_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.CancelledError):   # cancelled at the end of the run
            await ts.handle(reader, writer, parse_head(await reader.readuntil(b"\r\n\r\n")))

    async def main() -> None:
        srv = await asyncio.start_server(on_conn, HOST, 0, backlog=4096)
        port_out.put((srv.sockets[0].getsockname()[1], public_bytes(private_key(private))))
        loop = asyncio.get_running_loop()
        while True:
            cmd = await loop.run_in_executor(None, conn.recv)
            if cmd == "stop":
                return
            if cmd == "count":
                conn.send(len(queues))
                continue
            msg = frame(os.urandom(size), compress=False)
            target = sent[0] + len(queues)
            c0 = time.process_time()
            for q in queues:
                q.put_nowait(msg)
            while sent[0] < target:
                await asyncio.sleep(0.001)
            conn.send(time.process_time() - c0)

    asyncio.run(main())


def client_main(conn: Any, port: int, server_public: bytes, streams: int, profile: str | None) -> None:
    import cProfile

    from app.client.control import ControlClient

    _pin(1)
    prof = cProfile.Profile() if profile else None

    async def main() -> None:
        sem = asyncio.Semaphore(64)
        got = [0]
        target = [0]
        done = asyncio.Event()

        async def reader(c: ControlClient) -> None:
            async with sem:
                await c.connect(server_public)
            async for _body in c.map_frames():
                got[0] += 1
                if got[0] >= target[0]:
                    done.set()

        tasks = [asyncio.create_task(reader(ControlClient(HOST, port))) for _ in range(streams)]
        conn.send("started")
        loop = asyncio.get_running_loop()
        while True:
            cmd = await loop.run_in_executor(None, conn.recv)
            if cmd == "stop":
                for t in tasks:
                    t.cancel()
                return
            target[0] = got[0] + streams
            done.clear()
            if prof is not None:
                prof.enable()
            c0, t0 = time.process_time(), time.monotonic()
            conn.send("armed")
            await done.wait()
            wall, cpu = time.monotonic() - t0, time.process_time() - c0
            if prof is not None:
                prof.disable()
                prof.dump_stats(profile)
            conn.send((cpu, wall))

    asyncio.run(main())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.stream_bench", description=__doc__.split("\n")[0])
    ap.add_argument("--streams", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--size", type=int, default=200, help="bytes per message")
    ap.add_argument("--client-profile", metavar="FILE", help="cProfile of the client over the rounds")
    ap.add_argument("--queued", action="store_true",
                    help="every message through the stream's task (no direct write), for comparison")
    a = ap.parse_args(argv)
    ctx = mp.get_context("spawn")
    s_conn, s_child = ctx.Pipe()
    port_q = ctx.Queue()
    sp = ctx.Process(target=server_main, args=(s_child, port_q, a.size, a.queued), daemon=True)
    sp.start()
    port, public = port_q.get(timeout=30)
    c_conn, c_child = ctx.Pipe()
    cp = ctx.Process(target=client_main, args=(c_child, port, public, a.streams, a.client_profile), daemon=True)
    cp.start()
    c_conn.recv()
    t0 = time.monotonic()
    try:
        while True:
            s_conn.send("count")
            if s_conn.recv() >= a.streams:
                break
            if time.monotonic() - t0 > 300:
                raise TimeoutError("streams did not open within 300 s")
            time.sleep(0.2)
        print(f"{a.streams} map streams open in {time.monotonic() - t0:.1f} s")
        time.sleep(1.0)
        s_total = c_total = 0.0
        for r in range(a.rounds):
            c_conn.send("go")
            c_conn.recv()
            s_conn.send("go")
            s_cpu = s_conn.recv()
            c_cpu, wall = c_conn.recv()
            s_total += s_cpu
            c_total += c_cpu
            print(f"round {r + 1}: server {s_cpu * 1e6 / a.streams:.1f} us/msg, client {c_cpu * 1e6 / a.streams:.1f} "
                  f"us/msg, last arrival {wall * 1000:.0f} ms")
            time.sleep(0.3)
        n = a.rounds * a.streams
        print(f"mean CPU per message: server {s_total * 1e6 / n:.1f} us, client {c_total * 1e6 / n:.1f} us")
    finally:
        s_conn.send("stop")
        c_conn.send("stop")
        for p in (sp, cp):
            p.join(5)
            if p.is_alive():
                p.kill()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
