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
    if dt.tzinfo is not UTC:
        dt = dt.astimezone(UTC)
    if dt.year >= 1000:
        # isoformat is several times cheaper than strftime (node lists format 30,000 times):
        # "YYYY-MM-DDTHH:MM:SS[.ffffff]+00:00". strftime does not pad years below 1000.
        text = dt.isoformat()[:-6]
        return (text.rstrip("0") if dt.microsecond else text) + "Z"
    text = dt.strftime("%Y-%m-%dT%H:%M:%S")
    if dt.microsecond:
        text += f".{dt.microsecond:06d}".rstrip("0")
    return text + "Z"


def parse_go_time(text: str | None) -> datetime | None:
    """Parse an RFC 3339 time; the Go zero time and empty values mean None."""
    if text is None or text == "":
        return None
    if not isinstance(text, str):
        raise ValueError("a time must be an RFC 3339 string")  # noqa: TRY004 - callers catch ValueError for any bad time
    if text.startswith("0001-01-01"):
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
    try:
        return dt.astimezone(UTC)
    except OverflowError:   # 9999-12-31T23:59:59-23:59 is past datetime.max in UTC
        raise ValueError("time out of range") from None


class RequestError(ValueError):
    """A control request the server refuses (HTTP 400); the message is safe to send back."""


def parse_map_request(body: object, dropped: list[str] | None = None) -> dict:
    """Check a MapRequest's types (PROTOCOL.md 3.2) and normalise its keys.

    Go's decoder rejects a whole message on one wrong type, so the server does too for the
    request's own fields. Absent fields mean zero (clients >= 1.92 omit zero values). Inside
    Hostinfo, and among Endpoints, what peers could not decode is dropped instead
    (app.core.hostinfo) and named in ``dropped``.
    """
    from app.core import hostinfo, keys

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
    if endpoints is not None:
        out["Endpoints"] = hostinfo.normalise_endpoints(endpoints, dropped)
    if body.get("Hostinfo") is not None:
        out["Hostinfo"] = hostinfo.normalise_hostinfo(body["Hostinfo"], dropped)
    for flag in ("Stream", "OmitPeers", "KeepAlive"):
        if not isinstance(body.get(flag, False), bool):
            raise RequestError(f"invalid {flag}")
    return out


def parse_register_request(body: object, dropped: list[str] | None = None) -> dict:
    """Check a RegisterRequest's types (PROTOCOL.md 3.1) and normalise them.

    Returns a copy with ``NodeKey`` normalised, ``OldNodeKey`` a normalised key or None,
    ``Expiry`` a datetime or None, ``Auth`` a dict or None with ``AuthKey`` a str,
    ``Followup`` a str and ``Hostinfo`` normalised (app.core.hostinfo) or None.
    """
    from app.core import hostinfo, keys

    if not isinstance(body, dict):
        raise RequestError("invalid JSON body")
    out = dict(body)
    node_key = body.get("NodeKey")
    try:
        out["NodeKey"] = keys.normalise(node_key if isinstance(node_key, str) else "", keys.NODE_PUBLIC)
    except keys.KeyError_:
        raise RequestError("invalid node key in register request") from None
    old = body.get("OldNodeKey")
    if old is not None and not isinstance(old, str):
        raise RequestError("invalid OldNodeKey in register request")
    try:
        out["OldNodeKey"] = keys.normalise(old, keys.NODE_PUBLIC) if old and not keys.is_zero(old) else None
    except keys.KeyError_:
        raise RequestError("invalid OldNodeKey in register request") from None
    try:
        out["Expiry"] = parse_go_time(body.get("Expiry"))
    except ValueError:
        raise RequestError("invalid Expiry in register request: expected an RFC 3339 time") from None
    auth = body.get("Auth")
    if auth is not None:
        auth_key = (auth.get("AuthKey") or "") if isinstance(auth, dict) else None
        if not isinstance(auth_key, str) or "\x00" in auth_key:
            raise RequestError("invalid Auth in register request")
        auth = dict(auth, AuthKey=auth.get("AuthKey") or "")
    out["Auth"] = auth
    followup = body.get("Followup")
    if followup is not None and (not isinstance(followup, str) or "\x00" in followup):
        raise RequestError("invalid Followup in register request")
    out["Followup"] = followup or ""
    if body.get("Hostinfo") is not None and not isinstance(body["Hostinfo"], dict):
        raise RequestError("invalid Hostinfo in register request")
    out["Hostinfo"] = hostinfo.normalise_hostinfo(body.get("Hostinfo"), dropped)
    return out
