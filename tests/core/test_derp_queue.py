"""Bounded per-client send queue (app/core/derp/queue.py)."""

from app.core.derp.queue import SendQueue


def test_take_returns_priority_first_then_data_in_order():
    q = SendQueue()
    q.push(b"d1")
    q.push(b"p1", priority=True)
    q.push(b"d2")
    assert len(q) == 3 and q.nbytes == 6
    assert q.take() == b"p1d1d2"
    assert len(q) == 0 and q.take() == b""


def test_full_data_queue_drops_oldest_first():
    q = SendQueue(max_frames=3)
    drops = [q.push(bytes([i])) for i in range(5)]
    assert drops == [0, 0, 0, 1, 1]
    assert q.take() == b"\x02\x03\x04"
    assert q.dropped == 2 and q.dropped_bytes == 2


def test_byte_bound_keeps_memory_bounded_but_never_drops_the_newest():
    q = SendQueue(max_frames=1000, max_bytes=10_000)
    for _ in range(100):
        q.push(bytes(1200))
    assert q.nbytes <= 10_000 and len(q) == 8
    q2 = SendQueue(max_bytes=10)
    q2.push(bytes(100))  # bigger than the bound on its own: still delivered
    assert q2.take() == bytes(100)


def test_data_flood_does_not_evict_priority_frames():
    q = SendQueue(max_frames=2, max_priority=2)
    q.push(b"P", priority=True)
    for _ in range(10):
        q.push(b"d")
    assert q.take() == b"Pdd"
    for i in range(4):
        q.push(bytes([65 + i]), priority=True)
    assert q.take() == b"CD"


def test_clear_counts_discarded_frames():
    q = SendQueue()
    q.push(b"a")
    q.push(b"b", priority=True)
    assert q.clear() == 2 and q.dropped == 2 and len(q) == 0
