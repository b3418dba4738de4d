"""Aggregated log lines (app/core/ratelog.py): one line per source and reason per interval."""

from app.core.ratelog import OVERFLOW, RateLog


def test_first_hit_logs_then_counts_until_the_interval_ends():
    r = RateLog(interval=60)
    assert r.hit("1.2.3.4", "refused", 0.0) == 0
    assert [r.hit("1.2.3.4", "refused", t) for t in (1, 2, 3)] == [None, None, None]
    assert r.hit("5.6.7.8", "refused", 4.0) == 0          # another source has its own line
    assert r.hit("1.2.3.4", "refused", 61.0) == 3         # the next line carries the count
    assert r.hit("1.2.3.4", "refused", 62.0) is None


def test_flush_reports_counts_and_forgets_quiet_keys():
    r = RateLog(interval=10)
    r.hit("a", "x", 0.0)
    r.hit("a", "x", 1.0)
    r.hit("b", "x", 0.0)
    assert r.flush(5.0) == []
    assert r.flush(11.0) == [("a", "x", 1)]
    assert r.flush(22.0) == []           # both quiet for an interval: forgotten
    assert r.hit("a", "x", 23.0) == 0


def test_the_table_is_bounded():
    r = RateLog(interval=60, max_keys=3)
    for i in range(3):
        assert r.hit(f"s{i}", "x", 0.0) == 0
    assert r.hit("s9", "x", 1.0) == 0        # shares the overflow key
    assert r.hit("s10", "x", 2.0) is None
    assert len(r._entries) == 4 and (OVERFLOW, "x") in r._entries
