from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone

import pytest

from app.store import Database
from app.store.codec import ZERO_TIME, decode_list, format_time, parse_bool, parse_time

from .conftest import T0


async def test_policy_get_set(db, clock):
    assert await db.get_policy() is None
    data, when = await db.set_policy('{"acls": []}')
    assert (data, when) == ('{"acls": []}', T0)
    clock.advance(60)
    await db.set_policy("// v2\n{}")
    assert await db.get_policy() == ("// v2\n{}", T0 + timedelta(seconds=60))


@pytest.mark.parametrize("text, expected", [
    ("2023-03-30 23:20:01.05202704+00:00", datetime(2023, 3, 30, 23, 20, 1, 52027, tzinfo=UTC)),
    ("2024-01-01 00:00:00+00:00", datetime(2024, 1, 1, tzinfo=UTC)),
    ("2024-01-01 02:00:00+02:00", datetime(2024, 1, 1, tzinfo=UTC)),
    ("2024-01-01T00:00:00Z", datetime(2024, 1, 1, tzinfo=UTC)),
    ("2024-01-01 00:00:00", datetime(2024, 1, 1, tzinfo=UTC)),
    ("2024-01-01 00:00:00.5 +0000 UTC", datetime(2024, 1, 1, 0, 0, 0, 500000, tzinfo=UTC)),
    ("0001-01-01 00:00:00+00:00", ZERO_TIME),
    ("0001-01-01 00:00:00+01:00", ZERO_TIME),
    (None, None),
    ("garbage", None),
])
def test_parse_time(text, expected):
    assert parse_time(text) == expected


def test_format_time():
    assert format_time(None) is None
    assert format_time(datetime(2024, 1, 1, tzinfo=UTC)) == "2024-01-01 00:00:00+00:00"
    assert format_time(datetime(2024, 1, 1, 0, 0, 0, 120000, tzinfo=UTC)) == "2024-01-01 00:00:00.12+00:00"
    assert format_time(datetime(2024, 1, 1, 3, tzinfo=timezone(timedelta(hours=3)))) == "2024-01-01 00:00:00+00:00"
    assert format_time(ZERO_TIME) == "0001-01-01 00:00:00+00:00"
    for value in (datetime(2025, 7, 4, 1, 2, 3, 4, tzinfo=UTC), ZERO_TIME):
        assert parse_time(format_time(value)) == value


def test_bool_and_list_decoding():
    assert [parse_bool(v) for v in (1, 0, None, "true", "false", b"1")] == [True, False, False, True, False, True]
    assert decode_list(None) == decode_list("null") == decode_list("") == decode_list("[]") == ()
    assert decode_list('["a","b"]') == ("a", "b")
    assert decode_list("{not json") == ()


async def test_concurrent_writes_are_serialised(db):
    users = await asyncio.gather(*(db.create_user(f"user{i:03d}") for i in range(50)))
    assert sorted(u.id for u in users) == list(range(1, 51))
    assert len(await db.list_users()) == 50


async def test_open_twice_is_idempotent(tmp_path, clock):
    path = str(tmp_path / "db.sqlite")
    first = await Database.open(path, clock=clock)
    await first.create_user("alice")
    await first.close()
    second = await Database.open(path, clock=clock)
    assert second.migration_report.applied == ()
    assert [u.name for u in await second.list_users()] == ["alice"]
    assert await second.ping()
    await second.close()


async def test_in_memory_paths_are_refused():
    from app.store import Invalid

    with pytest.raises(Invalid):
        await Database.open(":memory:")
