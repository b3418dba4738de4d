"""go_time formats with isoformat for speed (node lists format tens of thousands of times);
it must produce exactly what the strftime formulation does, for every zone and year."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from app.core.tailcfg import GO_ZERO_TIME, go_time


def _strftime_go_time(dt: datetime | None) -> str:
    if dt is None or dt.year <= 1:
        return GO_ZERO_TIME
    dt = dt.astimezone(UTC)
    text = dt.strftime("%Y-%m-%dT%H:%M:%S")
    if dt.microsecond:
        text += f".{dt.microsecond:06d}".rstrip("0")
    return text + "Z"


def test_go_time_matches_strftime_formulation():
    rng = random.Random(7)
    zones = [UTC, timezone(timedelta(0)), timezone(timedelta(hours=5, minutes=30)),
             timezone(timedelta(hours=-8)), ZoneInfo("Europe/Berlin"), ZoneInfo("UTC")]
    checked = 0
    for _ in range(20000):
        year = rng.choice([2, 5, 999, 1000, 1001, 1970, 2026, 9999, rng.randint(2, 9999)])
        micro = rng.choice([0, 1, 100000, 120000, 999999, rng.randint(0, 999999)])
        try:
            dt = datetime(year, rng.randint(1, 12), rng.randint(1, 28), rng.randint(0, 23),
                          rng.randint(0, 59), rng.randint(0, 59), micro, tzinfo=rng.choice(zones))
            want = _strftime_go_time(dt)
        except (OverflowError, ValueError):
            continue
        assert go_time(dt) == want, dt
        checked += 1
    assert checked > 15000
    assert go_time(None) == go_time(datetime(1, 1, 1, tzinfo=UTC)) == GO_ZERO_TIME
    assert go_time(datetime(2026, 1, 2, 3, 4, 5, 120000, tzinfo=UTC)) == "2026-01-02T03:04:05.12Z"
    assert go_time(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2026-01-02T03:04:05Z"
