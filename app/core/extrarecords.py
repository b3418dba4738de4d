"""``dns.extra_records_path``: a JSON file of extra DNS records, as headscale reads it.

The file is a JSON array of records, each ``{"name": ..., "type": "A" | "AAAA", "value": IP}``
(Tailscale clients answer only A and AAAA from ExtraRecords)::

    [{"name": "grafana.tailnet.example", "type": "A", "value": "100.64.0.3"},
     {"name": "grafana.tailnet.example", "type": "AAAA", "value": "fd7a:115c:a1e0::3"}]

``parse_records`` turns the text into records or raises ``ValueError`` with the first problem
and where it is; ``with_records`` puts them into a tailcfg.DNSConfig.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

__all__ = ["parse_records", "with_records"]

_FIELDS = ("name", "type", "value")


def parse_records(text: str) -> list[dict[str, str]]:
    """JSON text → records (sorted, duplicates dropped). ``ValueError`` names the problem."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    if not isinstance(data, list):
        raise ValueError("expected a JSON array of {name, type, value} records")  # noqa: TRY004 - bad input, one error type
    out: dict[tuple[str, str, str], dict[str, str]] = {}
    for i, item in enumerate(data):
        where = f"record {i}"
        if not isinstance(item, dict):
            raise ValueError(f"{where}: expected an object with name, type and value")  # noqa: TRY004
        unknown = sorted(set(item) - set(_FIELDS))
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {', '.join(unknown)}")
        if not all(isinstance(item.get(f), str) and item.get(f) for f in _FIELDS):
            raise ValueError(f"{where}: name, type and value must be non-empty strings")
        rtype = item["type"].upper()
        if rtype not in ("A", "AAAA"):
            raise ValueError(f"{where}: type {item['type']!r} is not supported (A or AAAA only)")
        try:
            addr = ipaddress.ip_address(item["value"])
        except ValueError:
            raise ValueError(f"{where}: value {item['value']!r} is not an IP address") from None
        if (addr.version == 4) != (rtype == "A"):
            raise ValueError(f"{where}: value {item['value']!r} does not match type {rtype}")
        rec = {"name": item["name"].rstrip("."), "type": rtype, "value": str(addr)}
        out[(rec["name"], rtype, rec["value"])] = rec
    return [out[k] for k in sorted(out)]


def with_records(dns_config: dict[str, Any], records: list[dict[str, str]]) -> dict[str, Any]:
    """``dns_config`` with its ExtraRecords replaced by ``records`` (removed when empty)."""
    out = {k: v for k, v in dns_config.items() if k != "ExtraRecords"}
    if records:
        out["ExtraRecords"] = [{"Name": r["name"], "Type": r["type"], "Value": r["value"]} for r in records]
    return out
