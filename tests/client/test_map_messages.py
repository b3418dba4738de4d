"""The load generator's map stream reader: length-prefixed messages out of DATA frames cut
anywhere (inside the 4-byte length too), each message whole and in order."""

from __future__ import annotations

import random

import pytest

from app.client.control import MessageSplitter


@pytest.mark.parametrize("seed", range(4))
def test_map_messages_split_at_any_point_come_out_whole(seed):
    rnd = random.Random(seed)
    bodies = [rnd.randbytes(rnd.choice([0, 1, 3, 200, 70_000])) for _ in range(40)]
    stream = b"".join(len(b).to_bytes(4, "little") + b for b in bodies)
    splitter, got, pos = MessageSplitter(), [], 0
    while pos < len(stream):
        cut = min(len(stream), pos + rnd.choice([1, 2, 3, 5, 16384, 100_000]))
        got += splitter.feed(stream[pos:cut])
        pos = cut
    assert got == bodies
