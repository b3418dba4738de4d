"""Build the JSON of MapResponses (PROTOCOL.md 3.4, 4.1-4.6).

Pure functions from domain records to wire dicts. Peer entries are built once per node
version and reused for every viewer (the service caches their encoded bytes); a full map is
assembled from those pieces without re-encoding them.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app.core.map.wire import encode_json
from app.core.model import (
    TAGGED_DEVICES_DISPLAY,
    TAGGED_DEVICES_LOGIN,
    TAGGED_DEVICES_USER_ID,
    Node,
    User,
)
from app.core.names import fqdn
from app.core.tailcfg import go_time

CAP_ADMIN = "https://tailscale.com/cap/is-admin"
CAP_SSH = "https://tailscale.com/cap/ssh"
CAP_FILE_SHARING = "https://tailscale.com/cap/file-sharing"
ATTR_DEFAULT_AUTO_UPDATE = "default-auto-update"
ATTR_DISABLE_IPV4 = "disable-ipv4"

ALLOW_ALL_FILTER: list[dict[str, Any]] = [
    {"SrcIPs": ["*"], "DstPorts": [{"IP": "*", "Ports": {"First": 0, "Last": 65535}}]}
]
EXIT_ROUTES = frozenset({"0.0.0.0/0", "::/0"})


@dataclass(frozen=True)
class MapSettings:
    """The config-derived parts of every map."""

    base_domain: str = ""
    domain: str = ""                      # MapResponse.Domain: host of server_url
    dns_config: dict[str, Any] = field(default_factory=dict)
    taildrop: bool = True
    auto_update: bool = False
    logtail: bool = False


def dns_config(
    *,
    magic_dns: bool,
    base_domain: str,
    override_local_dns: bool,
    global_nameservers: list[str],
    split: dict[str, list[str]],
    search_domains: list[str],
    extra_records: list[dict[str, str]],
) -> dict[str, Any]:
    """tailcfg.DNSConfig from headscale's dns.* settings (dnsToTailcfgDNS)."""
    out: dict[str, Any] = {}
    resolvers = [{"Addr": ns} for ns in global_nameservers]
    if resolvers:
        out["Resolvers" if override_local_dns else "FallbackResolvers"] = resolvers
    if split:
        out["Routes"] = {dom: [{"Addr": ns} for ns in servers] for dom, servers in split.items()}
    domains = ([base_domain] if base_domain else []) + list(search_domains)
    if domains:
        out["Domains"] = domains
    if magic_dns:
        out["Proxied"] = True
    if extra_records:
        out["ExtraRecords"] = [
            {"Name": r["name"], "Type": r.get("type", "A"), "Value": r["value"]} for r in extra_records
        ]
    return out


def prefix_of(addr: str) -> str:
    return f"{addr}/32" if ipaddress.ip_address(addr).version == 4 else f"{addr}/128"


def node_addresses(node: Node, ipv4_disabled: bool = False) -> list[str]:
    return [prefix_of(a) for a in node.addresses if not (ipv4_disabled and ":" not in a)]


def protocol_user_id(node: Node) -> int:
    return TAGGED_DEVICES_USER_ID if node.is_tagged or node.user_id is None else node.user_id


def user_profile(user: User | None, node: Node | None = None) -> dict[str, Any]:
    if user is None or (node is not None and node.is_tagged):
        return {
            "ID": TAGGED_DEVICES_USER_ID,
            "LoginName": TAGGED_DEVICES_LOGIN,
            "DisplayName": TAGGED_DEVICES_DISPLAY,
        }
    prof: dict[str, Any] = {"ID": user.id, "LoginName": user.login_name, "DisplayName": user.shown_name}
    if user.profile_pic_url:
        prof["ProfilePicURL"] = user.profile_pic_url
    return prof


def _sort_prefixes(prefixes: list[str]) -> list[str]:
    def key(p: str) -> tuple[int, int, int]:
        net = ipaddress.ip_network(p, strict=False)
        return (net.version, int(net.network_address), net.prefixlen)

    return sorted(set(prefixes), key=key)


def tail_node(
    node: Node,
    settings: MapSettings,
    *,
    routes: list[str] = (),          # type: ignore[assignment]
    online: bool | None = None,
    cap_map: dict[str, Any] | None = None,
    now: datetime,
    capver: int = 0,
) -> dict[str, Any]:
    """A tailcfg.Node: the self view when ``cap_map`` is given, else a peer view.

    ``routes`` are the subnet/exit routes the viewer should route to this node (primary
    subnet routes and approved exit routes); they extend AllowedIPs.
    """
    expired = node.is_expired(now)
    ipv4_disabled = bool(cap_map and ATTR_DISABLE_IPV4 in cap_map)
    addresses = node_addresses(node, ipv4_disabled)
    out: dict[str, Any] = {
        "ID": node.id,
        "StableID": str(node.id),
        "Name": fqdn(node.given_name, settings.base_domain),
        "User": protocol_user_id(node),
        "Key": node.node_key,
        "KeyExpiry": go_time(node.expiry),
        "Machine": node.machine_key,
        "DiscoKey": node.disco_key or "discokey:" + "0" * 64,
        "Addresses": addresses,
        "AllowedIPs": _sort_prefixes(addresses + list(routes)),
        "Endpoints": list(node.endpoints),
        "HomeDERP": node.home_derp,
        "Hostinfo": node.hostinfo or {},
        "Created": go_time(node.created_at),
        "MachineAuthorized": not expired,
    }
    if capver:
        out["Cap"] = capver
    primary = [r for r in routes if r not in EXIT_ROUTES]
    if primary:
        out["PrimaryRoutes"] = _sort_prefixes(primary)
    if node.tags:
        out["Tags"] = sorted(node.tags)
    if online is not None:
        out["Online"] = online
        if not online and node.last_seen is not None:
            out["LastSeen"] = go_time(node.last_seen)
    if expired:
        out["Expired"] = True
    if cap_map is not None:
        caps: dict[str, Any] = {CAP_ADMIN: [], CAP_SSH: []}
        if settings.taildrop:
            caps[CAP_FILE_SHARING] = []
        caps[ATTR_DEFAULT_AUTO_UPDATE] = [settings.auto_update]
        caps.update(cap_map)
        out["CapMap"] = caps
    return out


def full_map_head(
    self_node: dict[str, Any],
    settings: MapSettings,
    *,
    derp_map: dict[str, Any],
    packet_filter: list[dict[str, Any]],
    user_profiles: list[dict[str, Any]],
    ssh_policy: dict[str, Any] | None,
    dns: dict[str, Any] | None,
    now: datetime,
) -> dict[str, Any]:
    """Everything of the first response except the peer list."""
    out: dict[str, Any] = {
        "Node": self_node,
        "DERPMap": derp_map,
        "DNSConfig": dns if dns is not None else settings.dns_config,
        "Domain": settings.domain,
        "CollectServices": False,
        "PacketFilters": {"base": packet_filter},
        "UserProfiles": user_profiles,
        "ControlTime": go_time(now),
    }
    if ssh_policy is not None:
        out["SSHPolicy"] = ssh_policy
    if not settings.logtail:
        out["Debug"] = {"DisableLogTail": True}
    return out


def assemble(head: dict[str, Any], peers_key: str, peer_blobs: list[bytes]) -> bytes:
    """Encode ``head`` plus a list of pre-encoded peer objects under ``peers_key``."""
    body = encode_json(head)
    if not peer_blobs:
        return body
    return b"".join((body[:-1], b',"', peers_key.encode(), b'":[', b",".join(peer_blobs), b"]}"))
