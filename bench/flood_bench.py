"""Connection floods against a server process: descriptors, RSS and /health latency.

    python -m bench.flood_bench [--idle 400] [--noise 200] [--bodies 600] [--nofile 600]

The server runs as `headscale serve` in its own process with an open-file limit of
``--nofile`` (as in the probe of issue 11) and short idle timeouts (``--noise-idle``). Phases:

1. idle TCP: ``--idle`` connections from 127.0.0.1 that never send a byte; meanwhile /health
   from 127.0.0.2 (max latency), and how many the server kept open (per-source limit).
2. idle Noise: ``--noise`` connections that finish the Noise handshake and then say nothing;
   how many are still open after the idle timeout.
3. HTTP/2 streams: one handshaken connection opens as many streams as allowed, each sending as
   much request body as flow control allows, without finishing; RSS growth.
4. big bodies: ``--bodies`` concurrent 3 MB POSTs to /api/v1/user from 127.0.0.2-9; RSS peak.

After each phase every client socket is closed; descriptors and RSS are printed again.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time

import h2.exceptions

from app.client.control import ControlClient, fetch_key
from tests.procserver import ServerProc


def _figures(srv: ServerProc, label: str) -> tuple[int, int]:
    fds, rss = srv.fds(), srv.rss_kib()
    print(f"  {label:<28} fds {fds:5d}   RSS {rss / 1024:7.1f} MiB", flush=True)
    return fds, rss


async def _health(port: int, source: str = "127.0.0.2") -> float:
    t0 = time.perf_counter()
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0)), 10)
    writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    if b" 200 " not in data.split(b"\r\n", 1)[0]:
        raise RuntimeError(f"/health: {data[:80]!r}")
    return (time.perf_counter() - t0) * 1000


async def _open_idle(port: int, n: int) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    out = []
    for _ in range(n):
        try:
            out.append(await asyncio.open_connection("127.0.0.1", port))
        except OSError:
            break
    return out


async def _still_open(conns) -> int:
    await asyncio.sleep(0.5)
    return sum(1 for r, w in conns if not r.at_eof() and r.exception() is None and not w.is_closing())


async def fill_stream(c: ControlClient, sid: int, want: int, patience: float = 0.3) -> int:
    """Send up to ``want`` body bytes on an open stream, as fast as the server's flow-control
    window allows (waiting up to ``patience`` for a WINDOW_UPDATE); never ends the stream."""
    sent = 0
    waited = 0.0
    while sent < want:
        room = min(c.conn.local_flow_control_window(sid), want - sent)
        if room <= 0:
            if waited >= patience or c.closed.is_set():
                break
            await asyncio.sleep(0.01)
            waited += 0.01
            continue
        waited = 0.0
        while room > 0:
            n = min(room, c.conn.max_outbound_frame_size)
            c.conn.send_data(sid, b"x" * n)
            sent += n
            room -= n
        c._flush()
        await c.writer.drain()
    return sent


async def _close_all(conns) -> None:
    for _, w in conns:
        w.close()
    await asyncio.sleep(1.0)


async def run(args) -> dict:
    res: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        srv = ServerProc(tmp, {"tuning.noise_idle_timeout": f"{args.noise_idle}s",
                               "tuning.request_head_timeout": "10s"}, nofile=args.nofile,
                        env=dict(e.split("=", 1) for e in args.env))
        srv.start()
        try:
            port = srv.port
            await _health(port)
            res["baseline"] = _figures(srv, "baseline")

            print(f"phase 1: {args.idle} idle TCP connections from 127.0.0.1", flush=True)
            idle = await _open_idle(port, args.idle)
            lat = [await _health(port) for _ in range(10)]
            kept = await _still_open(idle)
            res["idle"] = _figures(srv, f"{len(idle)} opened, {kept} kept")
            print(f"  /health from 127.0.0.2 while held: max {max(lat):.1f} ms", flush=True)
            res["idle_health_ms"] = max(lat)
            await _close_all(idle)
            res["idle_after"] = _figures(srv, "after closing")

            print(f"phase 2: {args.noise} handshaken Noise connections that say nothing", flush=True)
            key = await fetch_key("127.0.0.1", port)
            clients = []
            for _ in range(args.noise):
                c = ControlClient("127.0.0.1", port)
                try:
                    await c.connect(key)
                except (OSError, ConnectionError):
                    break
                clients.append(c)
            _figures(srv, f"{len(clients)} handshaken")
            await asyncio.sleep(args.noise_idle + 3)
            open_after = sum(1 for c in clients if not c.closed.is_set())
            res["noise_open_after_idle"] = open_after
            res["noise"] = _figures(srv, f"open after {args.noise_idle + 3:.0f} s: {open_after}")
            for c in clients:
                c.writer.close()
            await asyncio.sleep(1.0)

            print("phase 3: one Noise connection, every stream with an unfinished body", flush=True)
            c = ControlClient("127.0.0.1", port)
            await c.connect(key)
            await asyncio.sleep(0.3)   # the server's SETTINGS
            sent = streams = 0
            try:
                for _ in range(250):
                    sid = c.conn.get_next_available_stream_id()
                    c.conn.send_headers(sid, [(":method", "POST"), (":path", "/machine/map"),
                                              (":scheme", "https"), (":authority", "x")])
                    streams += 1
                    sent += await fill_stream(c, sid, (1 << 20) - 1)
            except h2.exceptions.TooManyStreamsError:
                pass
            await asyncio.sleep(1.0)
            res["h2_sent"] = sent
            res["h2"] = _figures(srv, f"{streams} streams, {sent / 2**20:.1f} MiB accepted")
            c.writer.close()
            await asyncio.sleep(1.0)
            res["h2_after"] = _figures(srv, "after closing")

            print(f"phase 4: {args.bodies} concurrent 3 MB API requests", flush=True)
            body = b"x" * (3 << 20)

            async def post(i: int) -> bytes:
                try:
                    r, w = await asyncio.open_connection("127.0.0.1", port, local_addr=(f"127.0.0.{2 + i % 8}", 0))
                    w.write(b"POST /api/v1/user HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                            b"Content-Length: %d\r\n\r\n" % len(body))
                    try:
                        w.write(body)
                        await asyncio.wait_for(w.drain(), 20)
                    except (OSError, TimeoutError):
                        pass
                    data = await asyncio.wait_for(r.read(100), 20)
                    w.close()
                    return data[:12]
                except (OSError, TimeoutError):
                    return b"error"

            peak = 0

            async def sample():
                nonlocal peak
                while True:
                    peak = max(peak, srv.rss_kib())
                    await asyncio.sleep(0.05)

            sampler = asyncio.create_task(sample())
            answers = await asyncio.gather(*(post(i) for i in range(args.bodies)))
            sampler.cancel()
            counts: dict = {}
            for a in answers:
                counts[a] = counts.get(a, 0) + 1
            print(f"  answers: {counts}; RSS peak {peak / 1024:.1f} MiB", flush=True)
            res["bodies_peak_rss"] = peak
            await asyncio.sleep(2.0)
            _figures(srv, "after all closed")
            await asyncio.sleep(args.settle)
            res["end"] = _figures(srv, f"{args.settle:.0f} s later")
            await _health(port)
        finally:
            srv.stop()
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.flood_bench")
    p.add_argument("--idle", type=int, default=400)
    p.add_argument("--noise", type=int, default=200)
    p.add_argument("--bodies", type=int, default=600)
    p.add_argument("--nofile", type=int, default=600)
    p.add_argument("--noise-idle", type=float, default=3.0)
    p.add_argument("--settle", type=float, default=35.0, help="wait before the last figures (memory trim)")
    p.add_argument("--env", action="append", default=[], help="NAME=VALUE for the server process")
    args = p.parse_args(argv)
    res = asyncio.run(run(args))
    b_fds, b_rss = res["baseline"]
    e_fds, e_rss = res["end"]
    print(f"descriptors: baseline {b_fds}, end {e_fds}; RSS baseline {b_rss / 1024:.1f} MiB, "
          f"end {e_rss / 1024:.1f} MiB", flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
