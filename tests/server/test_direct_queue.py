"""A map session's queue (control_routes._DirectQueue): a message is written by whoever queues it
only while the stream's task is idle and nothing is queued before it; otherwise it queues."""

from __future__ import annotations

from app.server.control_routes import _DirectQueue


def test_written_at_once_while_idle_and_empty():
    q, wrote = _DirectQueue(), []
    q.write_now = lambda item: wrote.append(item) or True
    q.put_nowait(b"m1")
    assert wrote == [b"m1"] and q.empty()


def test_queued_when_the_write_must_wait_and_order_is_kept():
    q, wrote = _DirectQueue(), []
    room = [False]
    q.write_now = lambda item: room[0] and (wrote.append(item) or True)
    q.put_nowait(b"m1")          # no room: queued
    room[0] = True
    q.put_nowait(b"m2")          # room now, but m1 is queued before it: queued too
    assert wrote == [] and [q.get_nowait(), q.get_nowait()] == [b"m1", b"m2"]


def test_resync_markers_and_failures_go_to_the_task():
    q, wrote = _DirectQueue(), []

    def broken(item: bytes) -> bool:
        raise OSError("gone")

    q.write_now = lambda item: wrote.append(item) or True
    q.put_nowait(b"")            # a resync / close marker is the task's to handle
    assert wrote == [] and q.get_nowait() == b""
    q.write_now = broken
    q.put_nowait(b"m")
    assert q.get_nowait() == b"m"
    q.write_now = None           # the task is busy: everything queues
    q.put_nowait(b"n")
    assert q.get_nowait() == b"n"
