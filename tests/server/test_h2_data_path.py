"""The response write path of H2Server: DATA frames framed by us (not h2) for all but the frame
that ends a stream, flow-control windows debited exactly, one write per message. A strict h2
client on the other side is the judge: it raises on a frame over its window or frame size."""

from __future__ import annotations

import asyncio
import hashlib
import random

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest

from app.core.noise import NoiseTransport
from app.server.h2server import H2Server, StreamClosed

K1 = hashlib.blake2s(b"up").digest()
K2 = hashlib.blake2s(b"down").digest()


class Pair:
    """An H2Server whose handler sends ``messages`` on one response stream, and a strict h2
    client reading it through a Noise record layer (records cut at random points)."""

    def __init__(self, messages: list[bytes], *, window: int = 65535, max_frame: int = 16384,
                 end: bool = False, pieces: bool = False) -> None:
        self.messages = messages
        self.pieces = pieces       # send each message as random pieces of it, not as bytes
        self.end = end
        self.wire = bytearray()
        self.writes = 0
        self.server_noise, self.client_noise = NoiseTransport(K2, K1), NoiseTransport(K1, K2)
        self.sent: list[int] = []
        self.failure: BaseException | None = None
        self.handler_done = asyncio.Event()
        self.client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.client.local_settings = h2.settings.Settings(client=True, initial_values={
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window,
            h2.settings.SettingCodes.MAX_FRAME_SIZE: max_frame})
        self.client.max_inbound_frame_size = max_frame   # (settings given up front count at once)
        self.client.initiate_connection()
        if window > 65535:
            self.client.increment_flow_control_window(window - 65535)
        self.writes_per_message: list[int] = []
        self.body: dict[int, bytearray] = {}
        self.ended: set[int] = set()
        self.reset: set[int] = set()
        self.frames: list[tuple[int, int]] = []   # (stream, DATA payload length)
        self.owed: list[tuple[int, int]] = []     # credit read but not yet given back

    def write(self, data: bytes) -> None:
        self.writes += 1
        self.wire += self.server_noise.encrypt(data)

    async def handler(self, req, resp) -> None:
        try:
            await resp.start(200, [("content-type", "application/octet-stream")])
            for i, m in enumerate(self.messages):
                before = self.writes
                await resp.send(cut(m, i) if self.pieces else m, end=self.end and i == len(self.messages) - 1)
                self.writes_per_message.append(self.writes - before)
                self.sent.append(i)
        except BaseException as exc:
            self.failure = exc
            raise
        finally:
            self.handler_done.set()

    async def start(self) -> None:
        async def drain() -> None:
            return None

        self.server = H2Server(self.write, drain, self.handler)
        await self.server.start()
        await self.to_server()     # the client's preface and SETTINGS; the server acks them
        self.to_client()           # (the client applies its own SETTINGS only once acked)
        await self.request()

    async def request(self) -> int:
        sid = self.client.get_next_available_stream_id()
        self.client.send_headers(sid, [(":method", "POST"), (":path", "/x"), (":scheme", "http"),
                                       (":authority", "t")], end_stream=True)
        self.body[sid] = bytearray()
        await self.to_server()
        return sid

    async def to_server(self) -> None:
        await self.server.receive(self.client.data_to_send())
        for _ in range(5):
            await asyncio.sleep(0)

    def to_client(self, ack: bool = True) -> None:
        """Deliver what the server wrote, in random cuts of the record stream."""
        data, self.wire = bytes(self.wire), bytearray()
        if ack:
            for sid, n in self.owed:
                self.client.acknowledge_received_data(n, sid)
            self.owed = []
        pos = 0
        rnd = random.Random(len(data))
        while pos < len(data):
            cut = min(len(data), pos + rnd.randint(1, 5000))
            for plain in self.client_noise.receive_data(data[pos:cut]):
                for ev in self.client.receive_data(plain):
                    if isinstance(ev, h2.events.DataReceived):
                        self.body[ev.stream_id] += ev.data
                        self.frames.append((ev.stream_id, len(ev.data)))
                        if ack:
                            self.client.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                        else:
                            self.owed.append((ev.stream_id, ev.flow_controlled_length))
                    elif isinstance(ev, h2.events.StreamEnded):
                        self.ended.add(ev.stream_id)
                    elif isinstance(ev, h2.events.StreamReset):
                        self.reset.add(ev.stream_id)
            pos = cut

    async def pump(self, until, rounds: int = 200) -> None:
        for _ in range(rounds):
            self.to_client()
            await self.to_server()
            if until():
                return
        raise AssertionError("no progress")


def payload(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def cut(data: bytes, seed: int) -> list[bytes | memoryview]:
    """``data`` as pieces (bytes and views, some empty) that concatenate to it."""
    rnd = random.Random(seed)
    cuts = sorted(rnd.randrange(len(data) + 1) for _ in range(rnd.randrange(0, 8)))
    return [memoryview(data)[a:b] if k % 2 else data[a:b]
            for k, (a, b) in enumerate(zip([0, *cuts], [*cuts, len(data)]))]


@pytest.mark.parametrize("pieces", [False, True])
async def test_messages_arrive_whole_and_in_order_through_small_windows(pieces):
    msgs = [payload(n, i) for i, n in enumerate([10, 70_000, 1, 16384, 16385, 300_000, 5])]
    p = Pair(msgs, window=5000, pieces=pieces)
    await p.start()
    await p.pump(lambda: len(p.sent) == len(msgs))
    p.to_client()
    assert bytes(p.body[1]) == b"".join(msgs)
    assert all(n <= 5000 for _, n in p.frames)   # never more than the window allowed
    assert p.failure is None


@pytest.mark.parametrize("pieces", [False, True])
async def test_frames_respect_the_peers_max_frame_size(pieces):
    msgs = [payload(100_000, 1)]
    p = Pair(msgs, window=1 << 20, max_frame=20_000, pieces=pieces)
    await p.start()
    await p.pump(lambda: len(p.sent) == 1)
    p.to_client()
    assert bytes(p.body[1]) == msgs[0]
    assert max(n for _, n in p.frames) == 20_000
    # one message, one write: the frames of a whole window go out together
    assert p.writes_per_message == [1]


async def test_window_exhausted_mid_message_waits_for_credit():
    msgs = [payload(50_000, 2), payload(10, 3)]
    p = Pair(msgs, window=12_000)
    await p.start()
    p.to_client(ack=False)          # the client reads but gives no credit back
    await p.to_server()
    assert p.sent == [] and len(p.body[1]) == 12_000
    assert p.server.conn.local_flow_control_window(1) == 0
    await p.pump(lambda: len(p.sent) == 2)
    p.to_client()
    assert bytes(p.body[1]) == b"".join(msgs)


@pytest.mark.parametrize("pieces", [False, True])
async def test_end_of_stream_after_a_long_last_message(pieces):
    msgs = [payload(40_000, 4)]
    p = Pair(msgs, window=1 << 20, end=True, pieces=pieces)
    await p.start()
    await p.pump(lambda: 1 in p.ended)
    assert bytes(p.body[1]) == msgs[0]
    assert p.server.conn.streams.get(1) is None or p.server.conn.streams[1].closed


async def test_stream_reset_mid_message_ends_only_that_stream():
    msgs = [payload(200_000, 5)]
    p = Pair(msgs, window=10_000)
    await p.start()
    p.to_client(ack=False)
    await p.to_server()
    assert not p.handler_done.is_set()          # blocked on the window
    p.client.reset_stream(1)
    await p.to_server()
    await asyncio.wait_for(p.handler_done.wait(), 5)
    assert isinstance(p.failure, (StreamClosed, asyncio.CancelledError))
    assert len(p.body[1]) == 10_000
    # the connection goes on: a new stream is answered in full
    p.messages = [payload(30_000, 6)]
    p.handler_done.clear()
    p.failure = None
    sid = await p.request()
    await p.pump(lambda: p.handler_done.is_set())
    p.to_client()
    assert bytes(p.body[sid]) == p.messages[0]
    assert p.failure is None


async def test_send_on_a_closed_stream_raises_stream_closed():
    p = Pair([b"x"])
    await p.start()
    await p.pump(lambda: p.handler_done.is_set())
    resp_sid = 1
    with pytest.raises(StreamClosed):
        await p.server.send_data(resp_sid + 2, b"never opened", False)
    p.server.close()
    with pytest.raises(StreamClosed):
        await p.server.send_data(resp_sid, b"after close", False)


async def test_connection_window_is_shared_and_debited_exactly():
    # two streams share the connection's 64 KiB window (the client gives no more up front);
    # all bytes arrive, and the server's view of the window equals the client's at the end
    p = Pair([payload(50_000, 7)], window=60_000)
    assert p.client.inbound_flow_control_window == 65535
    await p.start()
    sid2 = await p.request()
    await p.pump(lambda: len(p.sent) == 2)
    await p.pump(lambda: not p.server.tasks)
    assert bytes(p.body[1]) == p.messages[0] and bytes(p.body[sid2]) == p.messages[0]
    assert p.server.conn.outbound_flow_control_window == p.client.inbound_flow_control_window


async def test_try_send_writes_only_what_needs_no_wait():
    p = Pair([], window=1000)
    room = [True]
    p_writable = lambda: room[0]   # the socket's state, switched by the test

    async def drain() -> None:
        return None

    async def handler(req, resp) -> None:
        await resp.start(200)
        p.resp = resp
        await asyncio.Event().wait()

    p.server = H2Server(p.write, drain, handler, writable=p_writable)
    await p.server.start()
    await p.to_server()
    p.to_client()
    sid = await p.request()
    resp = p.resp
    before = (p.server.conn.outbound_flow_control_window, p.writes)
    assert resp.try_send(b"a" * 600)
    assert not resp.try_send(b"b" * 600)          # more than the window left: nothing written
    assert p.server.conn.local_flow_control_window(sid) == 400
    room[0] = False
    assert not resp.try_send(b"c")                # the socket's buffer is full: nothing written
    room[0] = True
    assert resp.try_send(b"d" * 400)
    assert p.writes == before[1] + 2
    p.to_client()
    assert bytes(p.body[sid]) == b"a" * 600 + b"d" * 400
    p.client.reset_stream(sid)
    await p.to_server()
    assert not resp.try_send(b"e")                # reset: nothing more on this stream


async def test_try_send_needs_a_writable_check():
    p = Pair([b"x"])
    await p.start()      # H2Server without writable=: every message goes through send_data
    assert not p.server.try_send(1, b"y")
