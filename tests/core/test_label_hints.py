"""LabelHints gives new nodes exactly unique_label's name (the lowest free base-N) without
probing from base-1 each time, through takes, releases, renames and failed inserts."""

from __future__ import annotations

import random
import time

from app.core.names import LabelHints, unique_label


def test_label_hints_match_unique_label_under_random_operations():
    rng = random.Random(3)
    taken: set[str] = set()
    hints = LabelHints()
    bases = ["same", "web", "db-1", "node"]
    for _ in range(20000):
        op = rng.random()
        if op < 0.55:                                    # a join
            base = rng.choice(bases)
            got = hints.pick(base, taken)
            assert got == unique_label(base, taken), (base, got)
            if rng.random() < 0.03:
                hints.reset()                            # the insert failed: the name stays free
            else:
                taken.add(got)
        elif op < 0.8 and taken:                         # a delete
            name = rng.choice(sorted(taken))
            taken.discard(name)
            hints.released(name)
        elif op < 0.9 and taken:                         # a rename (to anything)
            name = rng.choice(sorted(taken))
            taken.discard(name)
            hints.released(name)
            taken.add(f"{rng.choice(bases)}-{rng.randint(1, 60)}")
        else:                                            # an update that keeps its name
            if taken:
                name = rng.choice(sorted(taken))
                hints.released(name)                     # unindexed and indexed again
    assert len(taken) > 100


def test_same_hostname_joins_do_not_probe_from_the_start():
    taken: set[str] = set()
    hints = LabelHints()
    t0 = time.process_time()
    for _ in range(20000):
        taken.add(hints.pick("same", taken))
    assert time.process_time() - t0 < 2.0                # probing from the start: ~200 M lookups
    assert "same-19999" in taken and len(taken) == 20000
    taken.discard("same-7")
    hints.released("same-7")
    assert hints.pick("same", taken) == "same-7"
