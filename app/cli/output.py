"""Output of the CLI: machine formats (``-o json|json-line|yaml``) and human tables.

Machine output prints the API objects exactly as the server sent them (camelCase, string IDs,
RFC 3339 times); human output is a table in the style of headscale's (pterm: columns joined
by `` | ``, multi-line cells for tags and addresses, times as ``2006-01-02 15:04:05`` UTC).
"""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime
from typing import Any

import yaml

FORMATS = ("json", "json-line", "yaml")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"  # headscale's HeadscaleDateTimeFormat, "2006-01-02 15:04:05"


class _Dumper(yaml.SafeDumper):
    pass


def _str_presenter(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str_presenter)


def dump(obj: Any, fmt: str) -> str:
    """Serialise ``obj`` in a machine format (no trailing newline)."""
    if fmt == "json":
        return json.dumps(obj, indent="\t", ensure_ascii=False)
    if fmt == "json-line":
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    if fmt == "yaml":
        return yaml.dump(obj, Dumper=_Dumper, sort_keys=False, allow_unicode=True,
                         default_flow_style=False).rstrip("\n")
    raise ValueError(f"unknown output format {fmt!r}")


def table(headers: list[str], rows: list[list[str]]) -> str:
    """A header row and data rows, columns separated by `` | ``; cells may contain newlines."""
    grid = [headers, *rows]
    split = [[str(c).split("\n") for c in row] for row in grid]
    widths = [0] * len(headers)
    for row in split:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], *(len(line) for line in cell))
    out: list[str] = []
    for row in split:
        height = max(len(cell) for cell in row)
        for n in range(height):
            parts = [(cell[n] if n < len(cell) else "").ljust(widths[i]) for i, cell in enumerate(row)]
            out.append(" | ".join(parts).rstrip())
    return "\n".join(out)


_FRACTION = re.compile(r"(\.\d{1,6})\d*")


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 time from the API; None for missing, empty or Go's zero time."""
    if not value or not isinstance(value, str):
        return None
    text = _FRACTION.sub(lambda m: m.group(1), value.strip(), count=1)
    text = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    if t.year <= 1:
        return None
    return t.astimezone(UTC)


def fmt_time(value: Any, missing: str = "") -> str:
    t = parse_time(value)
    return t.strftime(TIME_FORMAT) if t else missing


def rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def short_key(text: Any) -> str:
    """Tailscale's short form of a key: the first five base64 characters in brackets."""
    if not isinstance(text, str) or ":" not in text:
        return ""
    try:
        raw = bytes.fromhex(text.split(":", 1)[1])
    except ValueError:
        return ""
    if len(raw) != 32 or raw == bytes(32):
        return ""
    return "[" + base64.b64encode(raw[:4]).decode()[:5] + "]"


def yes_no(flag: Any) -> str:
    return "true" if flag else "false"
