"""DERP maps: parse, merge and build the embedded region (PROTOCOL.md 4.6).

Sources, merged in order (later wins on region ID): ``derp.urls`` (tailcfg.DERPMap JSON),
``derp.paths`` (headscale's YAML form, lower-case keys), then the embedded region when
``derp.server.enabled`` and ``automatically_add_embedded_derp_region``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

# tailcfg field names by their lower-case spelling (YAML files use lower case keys).
_REGION_FIELDS = {f.lower(): f for f in (
    "RegionID", "RegionCode", "RegionName", "Latitude", "Longitude", "Avoid", "NoMeasureNoHome", "Nodes",
)}
_NODE_FIELDS = {f.lower(): f for f in (
    "Name", "RegionID", "HostName", "CertName", "IPv4", "IPv6", "STUNPort", "STUNOnly", "DERPPort",
    "InsecureForTests", "STUNTestIP", "CanPort80",
)}


class DERPMapError(ValueError):
    pass


def _canon(obj: dict[str, Any], fields: dict[str, str], where: str) -> dict[str, Any]:
    out = {}
    for k, v in obj.items():
        name = fields.get(str(k).lower())
        if name is None:
            continue  # unknown fields are ignored, as Go's decoder does
        out[name] = v
    return out


def normalise(raw: Any, source: str = "derp map") -> dict[str, Any]:
    """A DERPMap dict with canonical field names and string region keys."""
    if not isinstance(raw, dict):
        raise DERPMapError(f"{source}: expected an object with 'regions'")
    regions_raw = None
    for k, v in raw.items():
        if str(k).lower() == "regions":
            regions_raw = v
    if not isinstance(regions_raw, dict):
        raise DERPMapError(f"{source}: 'regions' must be a map of region id to region")
    regions: dict[str, Any] = {}
    for rid, region in regions_raw.items():
        if not isinstance(region, dict):
            raise DERPMapError(f"{source}: region {rid} must be an object")
        r = _canon(region, _REGION_FIELDS, source)
        try:
            r["RegionID"] = int(r.get("RegionID", rid))
        except (TypeError, ValueError):
            raise DERPMapError(f"{source}: region {rid} has no numeric RegionID") from None
        nodes = r.get("Nodes") or []
        if not isinstance(nodes, list):
            raise DERPMapError(f"{source}: region {rid} nodes must be a list")
        r["Nodes"] = [_canon(n, _NODE_FIELDS, source) for n in nodes if isinstance(n, dict)]
        for n in r["Nodes"]:
            n.setdefault("RegionID", r["RegionID"])
        regions[str(r["RegionID"])] = r
    out: dict[str, Any] = {"Regions": regions}
    for k, v in raw.items():
        if str(k).lower() == "omitdefaultregions" and v:
            out["omitDefaultRegions"] = True
    return out


def merge(*maps: dict[str, Any]) -> dict[str, Any]:
    regions: dict[str, Any] = {}
    omit = False
    for m in maps:
        regions.update(m.get("Regions", {}))
        omit = omit or bool(m.get("omitDefaultRegions"))
    out: dict[str, Any] = {"Regions": dict(sorted(regions.items(), key=lambda kv: int(kv[0])))}
    if omit:
        out["omitDefaultRegions"] = True
    return out


def embedded_region(
    server_url: str,
    *,
    region_id: int = 999,
    region_code: str = "headscale",
    region_name: str = "Headscale Embedded DERP",
    stun_port: int = 3478,
    ipv4: str = "",
    ipv6: str = "",
) -> dict[str, Any]:
    """The region served by our own DERP relay, addressed like server_url."""
    parts = urlsplit(server_url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    node: dict[str, Any] = {
        "Name": str(region_id),
        "RegionID": region_id,
        "HostName": parts.hostname or "",
        "DERPPort": port,
        "STUNPort": stun_port if stun_port else -1,
    }
    if ipv4:
        node["IPv4"] = ipv4
    if ipv6:
        node["IPv6"] = ipv6
    return {
        "Regions": {
            str(region_id): {
                "RegionID": region_id,
                "RegionCode": region_code,
                "RegionName": region_name,
                "Nodes": [node],
            }
        }
    }
