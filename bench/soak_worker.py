"""Simulated nodes for the soak (bench/soak.py): one worker process, one asyncio loop.

Each worker registers its nodes, opens their map streams and then, on its own, fires lite map
updates (``Stream=false, OmitPeers=true``) with a unique first endpoint (the marker) from random
nodes of its own at a fixed rate, and churns a few sessions (a new map stream on the same
connection, or a whole new Noise connection with the same keys).

Observer nodes (a sample) keep their view of every peer, cheaply: peer ID -> [first endpoint,
first DNS label of its name], built from the full map and then changed by PeersChanged,
PeersChangedPatch and PeersRemoved. All other nodes only count their messages (no
decompression): the load generator shares two cores with the server and must not starve it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import random
import signal
import time
from dataclasses import dataclass, field
from typing import Any

from bench.control_bench import HOST, endpoints, hostinfo


def marker_of(k: int) -> str:
    """A unique, valid endpoint for change number ``k`` (under 2**24 changes)."""
    return f"10.{(k >> 16) & 255}.{(k >> 8) & 255}.{k & 255}:41641"


def peer_entry(p: dict[str, Any]) -> list[Any]:
    eps = p.get("Endpoints") or [None]
    return [eps[0], (p.get("Name") or "").split(".", 1)[0]]


@dataclass
class Node:
    index: int
    client: Any
    observer: bool
    task: asyncio.Task | None = None
    gen: int = 0
    messages: int = 0
    error: str = ""
    view: dict[int, list[Any]] | None = None
    anomalies: int = 0                    # patches for a peer the view does not hold
    anomaly_examples: list[Any] = field(default_factory=list)
    self_patches: int = 0
    self_id: int | None = None
    endpoints: list[str] = field(default_factory=list)   # sent with every map request, as a real client
    first: asyncio.Event = field(default_factory=asyncio.Event)


class SoakWorker:
    def __init__(self, conn: Any, port: int, server_public: bytes, auth_key: str, indices: list[int],
                 observers: list[int], wid: int, nworkers: int) -> None:
        self.conn, self.port, self.server_public, self.auth_key = conn, port, server_public, auth_key
        self.indices, self.observers, self.wid, self.nworkers = indices, set(observers), wid, nworkers
        self.nodes: dict[int, Node] = {}
        self.busy: set[int] = set()       # a lite update in flight or a reconnect under way
        self.seq = 0
        self.last: dict[int, str] = {}    # index -> last acknowledged marker
        self.uncertain: dict[int, list[str]] = {}
        self.skipped = self.in_flight_max = 0
        self.fired = self.acked = self.failed = self.churned = self.churn_failed = 0
        self.latencies: list[float] = []
        self.statuses: dict[int, int] = {}    # answers other than 200 to lite updates
        self.loop_task: asyncio.Task | None = None
        self.pending: set[asyncio.Task] = set()

    async def run(self) -> None:
        from app.client.control import ControlClient

        self.nodes = {i: Node(i, ControlClient(HOST, self.port), i in self.observers) for i in self.indices}
        loop = asyncio.get_running_loop()
        while True:
            cmd, arg = await loop.run_in_executor(None, self.conn.recv)
            if cmd == "stop":
                await self.stop()
                self.conn.send(None)
                return
            self.conn.send(await getattr(self, "cmd_" + cmd)(**arg))

    async def cmd_register(self, concurrency: int) -> dict[str, Any]:
        sem = asyncio.Semaphore(concurrency)
        errors: list[str] = []

        async def one(n: Node) -> None:
            async with sem:
                try:
                    await n.client.connect(self.server_public)
                    out = await n.client.register(self.auth_key, hostinfo=hostinfo(n.index))
                    if out.get("Error") or not out.get("MachineAuthorized"):
                        raise RuntimeError(out.get("Error") or "not authorized")
                except Exception as exc:  # noqa: BLE001 - counted and reported
                    errors.append(f"node {n.index}: {exc!r}")

        await asyncio.gather(*(one(n) for n in self.nodes.values()))
        return {"failed": len(errors), "errors": errors[:5],
                "keys": {i: n.client.node_key for i, n in self.nodes.items()}}

    # --- map streams ------------------------------------------------------------------------

    def _apply(self, n: Node, body: bytes) -> None:
        from app.core.map.wire import decompress

        msg = json.loads(decompress(body))
        if msg.get("Node"):
            n.self_id = msg["Node"].get("ID")
        if msg.get("Peers") is not None:
            n.view = {p["ID"]: peer_entry(p) for p in msg["Peers"]}
        view = n.view
        if view is None:
            return
        for p in msg.get("PeersChanged") or ():
            view[p["ID"]] = peer_entry(p)
        for pid in msg.get("PeersRemoved") or ():
            view.pop(pid, None)
        for p in msg.get("PeersChangedPatch") or ():
            entry = view.get(p["NodeID"])
            if entry is None and p["NodeID"] == n.self_id:
                n.self_patches += 1     # about the node itself: a client ignores it (reported, not an error)
            elif entry is None:
                n.anomalies += 1
                if len(n.anomaly_examples) < 3:
                    n.anomaly_examples.append({"patch": p, "self": n.self_id, "gen": n.gen, "peers": len(view)})
            elif "Endpoints" in p:
                entry[0] = (p["Endpoints"] or [None])[0]

    async def _read(self, n: Node) -> None:
        gen = n.gen
        try:
            async for body in n.client.map_frames(Endpoints=n.endpoints or endpoints(n.index)):
                if n.gen != gen:
                    continue        # replaced: the new stream counts
                n.messages += 1
                if n.observer:
                    self._apply(n, body)
                n.first.set()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a broken stream is reported, not fatal
            if n.gen == gen:
                n.error = repr(exc)
        finally:
            if n.gen == gen:
                n.first.set()

    def _open(self, n: Node) -> asyncio.Task:
        n.gen += 1
        n.first, n.error = asyncio.Event(), ""
        if n.observer:
            n.view = None
        n.task = asyncio.create_task(self._read(n))
        return n.task

    async def cmd_stream(self, concurrency: int, timeout: float) -> dict[str, Any]:
        sem = asyncio.Semaphore(concurrency)

        async def one(n: Node) -> None:
            async with sem:
                self._open(n)
                await n.first.wait()

        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(one(n) for n in self.nodes.values())), timeout)
        gc.collect()
        gc.freeze()     # long-lived client state: out of later full GC passes
        return self._count()

    def _count(self) -> dict[str, Any]:
        live = [n for n in self.nodes.values() if n.task is not None and not n.task.done() and n.first.is_set()]
        return {"streams": len(live), "messages": sum(n.messages for n in self.nodes.values()),
                "errors": [f"node {n.index}: {n.error}" for n in self.nodes.values() if n.error][:5],
                "broken": sum(1 for n in self.nodes.values() if n.error)}

    async def cmd_count(self) -> dict[str, Any]:
        return self._count()

    # --- changes and churn ------------------------------------------------------------------

    async def _fire(self, n: Node, marker: str) -> None:
        t0 = time.monotonic()
        try:
            n.endpoints = [marker] + endpoints(n.index)
            status = await asyncio.wait_for(n.client.lite_update(Endpoints=n.endpoints), 30)
            if status == 200:
                self.acked += 1
                self.last[n.index] = marker
                self.uncertain.pop(n.index, None)
                self.latencies.append(time.monotonic() - t0)
            else:
                self.failed += 1
                self.statuses[status] = self.statuses.get(status, 0) + 1
        except Exception:  # noqa: BLE001 - the update may or may not have landed: either is accepted
            self.failed += 1
            self.uncertain.setdefault(n.index, []).append(marker)
        finally:
            self.busy.discard(n.index)

    async def _churn(self, n: Node, reconnect: bool) -> None:
        from app.client.control import ControlClient

        old = n.task
        try:
            if reconnect:
                if old is not None:
                    old.cancel()
                with contextlib.suppress(Exception):
                    await n.client.close()
                c = n.client
                n.client = ControlClient(HOST, self.port, machine_private=c.machine_private,
                                         node_private=c.node_private, disco_private=c.disco_private)
                await asyncio.wait_for(n.client.connect(self.server_public), 30)
                self._open(n)
                await asyncio.wait_for(n.first.wait(), 30)
            else:
                self._open(n)       # the new session replaces the old one, then the old stream is reset
                await asyncio.wait_for(n.first.wait(), 30)
                if old is not None:
                    old.cancel()
            if n.error:
                raise RuntimeError(n.error)
            self.churned += 1
        except Exception:  # noqa: BLE001 - counted; the node shows up as not connected
            self.churn_failed += 1
        finally:
            self.busy.discard(n.index)

    def _spawn(self, coro: Any) -> None:
        t = asyncio.create_task(coro)
        self.pending.add(t)
        t.add_done_callback(self.pending.discard)

    async def _loop(self, rate: float, churn_rate: float, seconds: float, seed: int) -> None:
        rnd = random.Random(seed * 1000 + self.wid)
        order = list(self.nodes)
        t0 = time.monotonic()
        end = t0 + seconds
        fired_at = churned_at = 0
        while (now := time.monotonic()) < end:
            due_fire = int((now - t0) * rate) - fired_at
            due_churn = int((now - t0) * churn_rate) - churned_at
            for _ in range(max(0, due_fire)):
                fired_at += 1
                # one update per node at a time (the order of acks is the order of changes): a
                # busy node gives its turn to another
                n = next((m for m in (self.nodes[rnd.choice(order)] for _ in range(20)) if m.index not in self.busy),
                         None)
                if n is None:
                    self.skipped += 1
                    continue
                self.busy.add(n.index)
                k = self.seq * self.nworkers + self.wid
                self.seq += 1
                self.fired += 1
                self._spawn(self._fire(n, marker_of(k)))
                self.in_flight_max = max(self.in_flight_max, len(self.busy))
            for _ in range(max(0, due_churn)):
                churned_at += 1
                n = self.nodes[rnd.choice(order)]
                if n.index not in self.busy:
                    self.busy.add(n.index)
                    self._spawn(self._churn(n, reconnect=churned_at % 2 == 0))
            await asyncio.sleep(0.01)

    async def cmd_start(self, rate: float, churn_rate: float, seconds: float, seed: int) -> None:
        self.loop_task = asyncio.create_task(self._loop(rate, churn_rate, seconds, seed))

    async def cmd_finish(self) -> dict[str, Any]:
        """Wait for the firing loop and every update and churn still in flight."""
        if self.loop_task is not None:
            await self.loop_task
        while self.pending:
            await asyncio.gather(*list(self.pending), return_exceptions=True)
        return {"last": self.last, "uncertain": self.uncertain, "fired": self.fired, "acked": self.acked,
                "failed": self.failed, "churned": self.churned, "churn_failed": self.churn_failed,
                "latencies": self.latencies, "statuses": self.statuses,
                "skipped": self.skipped, "in_flight_max": self.in_flight_max}

    async def cmd_check(self, expected: dict[int, list[Any]], uncertain: dict[int, list[str]]) -> dict[str, Any]:
        """Compare every observer's view with ``expected`` (node ID -> [endpoint, name, node key])."""
        mismatches, examples, observers, anomalies = 0, [], 0, 0
        for n in self.nodes.values():
            if not n.observer:
                continue
            observers += 1
            anomalies += n.anomalies
            view = n.view or {}
            own = n.client.node_key
            for nid, (ep, name, key) in expected.items():
                if key == own:
                    continue
                got = view.get(nid)
                if got == [ep, name] or (got and got[1] == name and got[0] in uncertain.get(nid, ())):
                    continue
                mismatches += 1
                if len(examples) < 5:
                    examples.append({"observer": n.index, "peer": nid, "want": [ep, name], "got": got})
            mismatches += len(set(view) - set(expected))     # a peer that should not be there
        return {"observers": observers, "mismatches": mismatches, "examples": examples, "anomalies": anomalies,
                "anomaly_examples": [e for n in self.nodes.values() for e in n.anomaly_examples][:5],
                "self_patches": sum(n.self_patches for n in self.nodes.values())}

    async def stop(self) -> None:
        if self.loop_task is not None:
            self.loop_task.cancel()
        for t in list(self.pending):
            t.cancel()
        for n in self.nodes.values():
            if n.task is not None:
                n.task.cancel()
        for n in self.nodes.values():
            if n.task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await n.task
            with contextlib.suppress(Exception):
                await n.client.close()


def worker_main(conn: Any, port: int, server_public: bytes, auth_key: str, indices: list[int],
                observers: list[int], wid: int, nworkers: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the orchestrator decides when to stop
    asyncio.run(SoakWorker(conn, port, server_public, auth_key, indices, observers, wid, nworkers).run())
