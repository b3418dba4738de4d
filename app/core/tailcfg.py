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


class RequestError(ValueError):
    """A control request the server refuses (HTTP 400); the message is safe to send back."""


def parse_map_request(body: object) -> dict:
    """Check a MapRequest's types (PROTOCOL.md 3.2) and normalise its keys.

    Go's decoder rejects a whole message on one wrong type, so the server does too. Absent
    fields mean zero (clients >= 1.92 omit zero values).
    """
    from app.core import keys

    if not isinstance(body, dict):
        raise RequestError("invalid JSON body")
    version = body.get("Version")
    if not isinstance(version, int) or isinstance(version, bool) or version < MIN_SUPPORTED_CAPVER:
        raise RequestError("unsupported client version")
    out = dict(body)
    try:
        out["NodeKey"] = keys.normalise(str(body.get("NodeKey") or ""), keys.NODE_PUBLIC)
    except keys.KeyError_:
        raise RequestError("invalid node key") from None
    if body.get("DiscoKey") is not None:
        try:
            out["DiscoKey"] = keys.normalise(str(body["DiscoKey"]), keys.DISCO_PUBLIC)
        except keys.KeyError_:
            raise RequestError("invalid DiscoKey") from None
    endpoints = body.get("Endpoints")
    if endpoints is not None and not (isinstance(endpoints, list) and all(isinstance(e, str) for e in endpoints)):
        raise RequestError("invalid Endpoints")
    if body.get("Hostinfo") is not None and not isinstance(body["Hostinfo"], dict):
        raise RequestError("invalid Hostinfo")
    for flag in ("Stream", "OmitPeers", "KeepAlive"):
        if not isinstance(body.get(flag, False), bool):
            raise RequestError(f"invalid {flag}")
    return out
