"""Small helpers for the JSON shapes Go's encoding/json produces (PROTOCOL.md 0.1)."""

from __future__ import annotations

from datetime import UTC, datetime

GO_ZERO_TIME = "0001-01-01T00:00:00Z"
# Capability versions (tailcfg.CurrentCapabilityVersion of client releases).
MIN_SUPPORTED_CAPVER = 113   # v1.80, headscale's floor
SERVER_CAPVER = 130


def go_time(dt: datetime | None) -> str:
    """RFC 3339 in UTC with a ``Z``, fractional seconds only when non-zero (like Go)."""
    if dt is None or dt.year <= 1:
        return GO_ZERO_TIME
    dt = dt.astimezone(UTC)
    text = dt.strftime("%Y-%m-%dT%H:%M:%S")
    if dt.microsecond:
        text += f".{dt.microsecond:06d}".rstrip("0")
    return text + "Z"


def parse_go_time(text: str | None) -> datetime | None:
    """Parse an RFC 3339 time; the Go zero time and empty values mean None."""
    if not text or text.startswith("0001-01-01"):
        return None
    t = text.strip()
    if t.endswith(("Z", "z")):
        t = t[:-1] + "+00:00"
    # Python before 3.11 cannot take nanoseconds; trim to microseconds.
    if "." in t:
        head, rest = t.split(".", 1)
        digits = ""
        for ch in rest:
            if ch.isdigit():
                digits += ch
            else:
                break
        t = head + "." + (digits[:6].ljust(6, "0")) + rest[len(digits):]
    dt = datetime.fromisoformat(t)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)
