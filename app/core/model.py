"""Frozen domain records shared by every layer.

They mirror headscale 0.29's SQLite tables (users, nodes, pre_auth_keys, api_keys), with keys
kept in their text forms (``mkey:…``, ``nodekey:…``, ``discokey:…``). Records are immutable:
a change is a new record (``dataclasses.replace``), so snapshots can be shared freely.

Times are timezone-aware UTC ``datetime`` values; ``None`` means unset.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

# Tagged nodes are owned by this pseudo-user in the protocol (headscale types/users.go).
TAGGED_DEVICES_USER_ID = 2147455555
TAGGED_DEVICES_LOGIN = "tagged-devices"
TAGGED_DEVICES_DISPLAY = "Tagged Devices"


class RegisterMethod:
    UNSPECIFIED = ""
    AUTH_KEY = "authkey"
    CLI = "cli"
    OIDC = "oidc"

    API_NAMES: ClassVar[dict[str, str]] = {
        "": "REGISTER_METHOD_UNSPECIFIED",
        "authkey": "REGISTER_METHOD_AUTH_KEY",
        "cli": "REGISTER_METHOD_CLI",
        "oidc": "REGISTER_METHOD_OIDC",
    }


@dataclass(frozen=True, slots=True)
class User:
    id: int
    name: str
    display_name: str = ""
    email: str = ""
    provider_identifier: str | None = None
    provider: str = ""
    profile_pic_url: str = ""
    created_at: datetime | None = None

    @property
    def login_name(self) -> str:
        """What Tailscale shows as the login: email, else name (headscale's rule)."""
        return self.email or self.name or (self.provider_identifier or "") or str(self.id)

    @property
    def shown_name(self) -> str:
        return self.display_name or self.login_name


@dataclass(frozen=True, slots=True)
class Node:
    id: int
    machine_key: str
    node_key: str
    disco_key: str = ""
    hostname: str = ""
    given_name: str = ""
    user_id: int | None = None          # None for tagged nodes (tags are identity, 0.28+)
    ipv4: str | None = None
    ipv6: str | None = None
    endpoints: tuple[str, ...] = ()
    hostinfo: dict[str, Any] | None = field(default=None, compare=False)
    register_method: str = RegisterMethod.UNSPECIFIED
    tags: tuple[str, ...] = ()
    auth_key_id: int | None = None
    expiry: datetime | None = None
    last_seen: datetime | None = None
    approved_routes: tuple[str, ...] = ()
    created_at: datetime | None = None
    updated_at: datetime | None = None
    ephemeral: bool = False             # derived from the pre-auth key it registered with

    @property
    def is_tagged(self) -> bool:
        return bool(self.tags)

    @property
    def addresses(self) -> tuple[str, ...]:
        """The node's own IPs (no prefix length), IPv4 first."""
        return tuple(a for a in (self.ipv4, self.ipv6) if a)

    # Hostinfo is normalised where it enters (app.core.hostinfo, at the edge and when rows are
    # read), but these two feed every map: they stay total even for a record built otherwise.
    @property
    def routable_ips(self) -> tuple[str, ...]:
        """Routes the node advertises (Hostinfo.RoutableIPs)."""
        if not self.hostinfo:
            return ()
        ips = self.hostinfo.get("RoutableIPs")
        if not isinstance(ips, list):
            return ()
        return tuple(r for r in ips if isinstance(r, str))

    @property
    def home_derp(self) -> int:
        """Hostinfo.NetInfo.PreferredDERP; 0 (none) when absent or not a region id."""
        net = (self.hostinfo or {}).get("NetInfo")
        if not isinstance(net, dict):
            return 0
        region = net.get("PreferredDERP")
        if isinstance(region, int) and not isinstance(region, bool) and 0 <= region < 1 << 31:
            return region
        return 0

    def is_expired(self, now: datetime) -> bool:
        return self.expiry is not None and self.expiry.year > 1 and self.expiry <= now


@dataclass(frozen=True, slots=True)
class PreAuthKey:
    id: int
    prefix: str                         # the public part of hskey-auth-<prefix>-<secret>
    user_id: int | None
    reusable: bool = False
    ephemeral: bool = False
    used: bool = False
    tags: tuple[str, ...] = ()
    created_at: datetime | None = None
    expiration: datetime | None = None
    revoked: bool = False

    @property
    def masked(self) -> str:
        return f"hskey-auth-{self.prefix}-***" if self.prefix else "***"

    def is_expired(self, now: datetime) -> bool:
        return self.expiration is not None and self.expiration.year > 1 and self.expiration <= now


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: int
    prefix: str
    created_at: datetime | None = None
    expiration: datetime | None = None
    last_seen: datetime | None = None

    @property
    def masked(self) -> str:
        return f"hskey-api-{self.prefix}-***"

    def is_expired(self, now: datetime) -> bool:
        return self.expiration is not None and self.expiration.year > 1 and self.expiration <= now
