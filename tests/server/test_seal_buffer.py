"""The shared buffer large Noise writes are sealed into (app/server/seal_buffer.py): reused only
while no transport holds on to it. A transport that kept a view of it and saw it overwritten
would send records that fail to decrypt."""

from __future__ import annotations

import asyncio
import hashlib
import random

from app.core.noise import NoiseTransport
from app.server.seal_buffer import SEAL_IN_PLACE, SealBuffer

K1 = hashlib.blake2s(b"a").digest()
K2 = hashlib.blake2s(b"b").digest()


class FakeTransport:
    """Takes ``room`` bytes per write at once; the rest is copied (``copies``) or kept as the
    object handed in, as asyncio's socket transport does up to / from Python 3.12."""

    def __init__(self, copies: bool, room: int) -> None:
        self.copies, self.room = copies, room
        self.sent = bytearray()
        self.held: list = []

    def write(self, data) -> None:
        view = memoryview(data)
        if not self.held:
            self.sent += view[:self.room]
            view = view[self.room:]
        if len(view):
            self.held.append(bytes(view) if self.copies else view)

    def get_write_buffer_size(self) -> int:
        return sum(map(len, self.held))

    def flush(self) -> bytes:
        for h in self.held:
            self.sent += h
        self.held = []
        return bytes(self.sent)


class Copying(FakeTransport):
    pass


def messages(seed: int) -> list[bytes]:
    rnd = random.Random(seed)
    return [rnd.randbytes(rnd.choice([100, SEAL_IN_PLACE, 200_000, 1_300_000])) for _ in range(5)]


def decrypt_all(wire: bytes) -> bytes:
    return b"".join(NoiseTransport(K2, K1).receive_data(wire))


def test_a_transport_that_keeps_the_data_gets_a_buffer_of_its_own():
    shared = SealBuffer(copies=frozenset({Copying}))
    keeps = [FakeTransport(copies=False, room=r) for r in (0, 50_000, 10**7)]
    copies = [Copying(copies=True, room=r) for r in (0, 50_000)]
    noises = {id(t): NoiseTransport(K1, K2) for t in keeps + copies}
    sent: dict[int, list[bytes]] = {id(t): [] for t in keeps + copies}
    for i in range(4):                     # writes of all transports interleaved
        for t in keeps + copies:
            for m in messages(i * 10 + len(sent[id(t)])):
                shared.write(noises[id(t)], t, [m[:7], memoryview(m)[7:]])
                sent[id(t)].append(m)
    for t in keeps + copies:
        assert decrypt_all(t.flush()) == b"".join(sent[id(t)])
    # given up only after writes a keeping transport did not send at once
    assert 0 < shared.given_up <= sum(1 for t in keeps[:2] for m in sent[id(t)] if len(m) >= SEAL_IN_PLACE)


async def test_real_sockets_with_readers_that_fall_behind():
    """Several connections over loopback, written through one shared buffer while their
    readers do not read; then every byte read decrypts to what was written."""
    shared = SealBuffer()
    got: dict[int, bytes] = {}
    want: dict[int, bytes] = {}
    go = asyncio.Event()

    async def serve(reader, writer):
        k = int((await reader.readexactly(1))[0])
        noise = NoiseTransport(K1, K2)
        out = []
        for m in messages(k):
            shared.write(noise, writer.transport, [m[:100], memoryview(m)[100:]])
            out.append(m)
            await asyncio.sleep(0)          # other connections write in between
        want[k] = b"".join(out)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]

    async def client(k: int):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(bytes([k]))
        await go.wait()                     # fall behind: the server's writes pile up
        got[k] = await reader.read(-1)
        writer.close()

    tasks = [asyncio.create_task(client(k)) for k in range(6)]
    await asyncio.sleep(0.5)
    go.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 30)
    server.close()
    await server.wait_closed()
    for k in range(6):
        assert decrypt_all(got[k]) == want[k]
