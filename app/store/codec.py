"""Column encodings, as headscale (GORM over the glebarez/modernc SQLite driver) writes them.

| Go value                    | column text                                    |
|-----------------------------|------------------------------------------------|
| ``time.Time`` / ``*time.Time`` | ``2006-01-02 15:04:05.999999999-07:00``: space separator, |
|                             | fraction without trailing zeros (none if zero), numeric offset |
| nil ``*time.Time``          | NULL                                           |
| zero ``time.Time`` (pre-0.28 rows) | ``0001-01-01 00:00:00+00:00``           |
| ``bool``                    | integer 0 / 1 (old rows may hold the text ``false``/``true``) |
| JSON-serialised fields      | ``json.Marshal`` output: compact, UTF-8; nil slice is NULL, empty slice ``[]`` |
| keys, IPs                   | their text form (``nodekey:…``, ``100.64.0.1``); nil is NULL |

We always write UTC (``+00:00``) and microseconds at most; we read any offset and any
fraction length and return aware UTC datetimes. On PostgreSQL (headscale's GORM types) the
same text goes into ``timestamptz`` columns, booleans are ``boolean`` and hashes ``bytea``;
what comes back (datetime, bool, bytes) decodes through the same functions.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from app.core import jsonsafe

ZERO_TIME = datetime(1, 1, 1, tzinfo=UTC)


def format_time(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    elif value.year > 1:
        value = value.astimezone(UTC)
    else:
        value = value.replace(tzinfo=UTC)
    text = (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d} "
        f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}"
    )
    if value.microsecond:
        text += "." + f"{value.microsecond:06d}".rstrip("0")
    return text + "+00:00"


def parse_time(text: Any) -> datetime | None:
    """Column value → aware UTC datetime; NULL (and unparseable junk) → None. PostgreSQL's
    ``timestamptz`` arrives as a datetime already."""
    if text is None:
        return None
    if isinstance(text, datetime):
        if text.tzinfo is None:
            return text.replace(tzinfo=UTC)
        try:
            return text.astimezone(UTC)
        except OverflowError:  # year 1 with a positive offset
            return ZERO_TIME
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    if not isinstance(text, str):
        return None
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        return _parse_time_slow(text)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:  # year 1 with a positive offset
        return ZERO_TIME


def _parse_time_slow(text: str) -> datetime | None:
    """Forms fromisoformat rejects: Go's " +0000 UTC" suffixes and 'T'-less odd spacing."""
    cleaned = text.strip()
    for suffix in (" UTC", " +0000"):
        cleaned = cleaned.removesuffix(suffix)
    cleaned = cleaned.replace(" +", "+").replace(" -", "-")
    try:
        value = datetime.fromisoformat(cleaned)
    except ValueError:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        return ZERO_TIME


def parse_bool(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, (int, float)):
        return value != 0
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return str(value).strip().lower() in ("1", "true", "t", "yes")


def encode_json(value: Any) -> str:
    """Compact JSON like Go's json.Marshal (UTF-8, no spaces)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def encode_list(values: tuple[str, ...] | list[str]) -> str:
    return encode_json(list(values))


def decode_list(text: Any) -> tuple[str, ...]:
    """A JSON string array column; NULL, '', 'null' and junk are empty."""
    if text is None or text == "" or text == "null" or text == "[]":
        return ()
    try:
        value = jsonsafe.loads(text)  # depth-limited: a deeply nested row must not raise RecursionError
    except (ValueError, TypeError):
        return ()
    if not isinstance(value, list):
        return ()
    return tuple(str(v) for v in value if v is not None)


def encode_object(value: dict[str, Any] | None) -> str | None:
    return None if value is None else encode_json(value)


def decode_object(text: Any) -> dict[str, Any] | None:
    if text is None or text == "" or text == "null":
        return None
    try:
        value = json.loads(text)
    except (ValueError, TypeError):
        return None
    return value if isinstance(value, dict) else None
