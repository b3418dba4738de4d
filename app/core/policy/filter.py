"""Packet-filter building blocks in wire form (PROTOCOL.md §5.1).

Rules are plain JSON-ready dicts: ``{"SrcIPs": [...], "DstPorts": [{"IP", "Ports"}],
"IPProto": [...]}`` or ``{"SrcIPs": [...], "CapGrant": [{"Dsts", "CapMap"}]}``.
"""

from __future__ import annotations

from typing import Any

from .model import ALL_PORTS, PortRange

__all__ = [
    "ALLOW_ALL",
    "COMPANION_CAPS",
    "DRIVE",
    "DRIVE_SHARER",
    "RELAY",
    "RELAY_TARGET",
    "merge_rules",
    "net_port",
]

Rule = dict[str, Any]

ALLOW_ALL: list[Rule] = [{"SrcIPs": ["*"], "DstPorts": [
    {"IP": "*", "Ports": {"First": ALL_PORTS[0], "Last": ALL_PORTS[1]}}]}]

DRIVE = "tailscale.com/cap/drive"
DRIVE_SHARER = "tailscale.com/cap/drive-sharer"
RELAY = "tailscale.com/cap/relay"
RELAY_TARGET = "tailscale.com/cap/relay-target"
# A grant of the first capability also sends the second back from destinations to sources.
COMPANION_CAPS = ((DRIVE, DRIVE_SHARER), (RELAY, RELAY_TARGET))

def net_port(ip: str, ports: PortRange) -> dict[str, Any]:
    return {"IP": ip, "Ports": {"First": ports[0], "Last": ports[1]}}


def merge_rules(rules: list[Rule]) -> list[Rule]:
    """Join rules with the same SrcIPs and IPProto by concatenating DstPorts (not deduplicated,
    as Tailscale does); capability rules pass through untouched."""
    if len(rules) <= 1:
        return rules
    out: list[Rule] = []
    index: dict[tuple[tuple[str, ...], tuple[int, ...]], int] = {}
    for rule in rules:
        if "CapGrant" in rule:
            out.append(rule)
            continue
        key = (tuple(rule["SrcIPs"]), tuple(rule.get("IPProto", ())))
        at = index.get(key)
        if at is None:
            index[key] = len(out)
            out.append(rule)
        else:
            merged = dict(out[at])
            merged["DstPorts"] = merged["DstPorts"] + rule["DstPorts"]
            out[at] = merged
    return out
