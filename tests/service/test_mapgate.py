"""MapGate: at most ``limit`` full maps in flight, first come first served, and a stalled
client's slot comes back after ``hold`` seconds."""

from __future__ import annotations

import asyncio

from app.service.mapgate import MapGate


async def test_at_most_limit_in_flight_in_arrival_order():
    gate = MapGate(limit=3, hold=10)
    order: list[int] = []
    running = 0
    peak = 0

    async def send(i: int) -> None:
        nonlocal running, peak
        order.append(i)
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1

    await asyncio.gather(*(gate.run(lambda i=i: send(i)) for i in range(20)))
    assert peak == 3 and gate.peak == 3
    assert order == list(range(20))
    assert gate.in_flight == 0


async def test_a_stalled_send_gives_its_slot_back_after_hold():
    gate = MapGate(limit=1, hold=0.05)
    stalled = asyncio.Event()
    done: list[str] = []

    async def stall() -> None:
        await stalled.wait()
        done.append("stalled")

    async def quick() -> None:
        done.append("quick")

    t = asyncio.create_task(gate.run(stall))
    await asyncio.sleep(0)
    await asyncio.wait_for(gate.run(quick), 1.0)      # not blocked by the stalled one
    assert done == ["quick"]
    stalled.set()
    await t
    assert done == ["quick", "stalled"] and gate.in_flight == 0


async def test_a_failing_send_gives_its_slot_back():
    gate = MapGate(limit=1, hold=10)

    async def broken() -> None:
        raise ConnectionError("gone")

    for _ in range(3):
        try:
            await gate.run(broken)
        except ConnectionError:
            pass
    assert gate.in_flight == 0
    await asyncio.wait_for(gate.run(lambda: asyncio.sleep(0)), 1.0)
