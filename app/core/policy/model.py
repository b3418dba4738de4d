"""Typed, immutable policy objects (the result of ``parse_policy``).

Shapes follow headscale's ``policy/v2/types.go`` (PROTOCOL.md §5.2). Aliases are one small
record with a ``kind``; everything else is a frozen dataclass of tuples, so a parsed policy
can be shared between compilations.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = [
    "AG_DANGER_ALL",
    "AG_INTERNET",
    "AG_MEMBER",
    "AG_NONROOT",
    "AG_SELF",
    "AG_TAGGED",
    "ALL_PORTS",
    "AUTOGROUP",
    "AUTOGROUPS",
    "GROUP",
    "HOST",
    "PREFIX",
    "TAG",
    "USER",
    "WILDCARD",
    "Acl",
    "Alias",
    "AutoApprovers",
    "CheckPeriod",
    "DstEntry",
    "Grant",
    "IpEntry",
    "Network",
    "NodeAttr",
    "Policy",
    "PolicyTest",
    "PortRange",
    "SshRule",
    "SshTest",
    "frozen_map",
]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
PortRange = tuple[int, int]
ALL_PORTS: PortRange = (0, 65535)

# Alias kinds
WILDCARD = "wildcard"
USER = "user"
GROUP = "group"
TAG = "tag"
HOST = "host"
PREFIX = "prefix"
AUTOGROUP = "autogroup"

AG_INTERNET = "autogroup:internet"
AG_MEMBER = "autogroup:member"
AG_TAGGED = "autogroup:tagged"
AG_SELF = "autogroup:self"
AG_NONROOT = "autogroup:nonroot"
AG_DANGER_ALL = "autogroup:danger-all"
AUTOGROUPS = (AG_INTERNET, AG_MEMBER, AG_NONROOT, AG_TAGGED, AG_SELF, AG_DANGER_ALL)


def frozen_map(d: Mapping[Any, Any] | None = None) -> Mapping[Any, Any]:
    return MappingProxyType(dict(d or {}))


@dataclass(frozen=True, slots=True)
class Alias:
    """One policy reference: ``kind`` is one of the constants above, ``name`` its text."""

    kind: str
    name: str
    net: Network | None = None      # set for PREFIX

    def __str__(self) -> str:
        return self.name

    def is_autogroup(self, which: str) -> bool:
        return self.kind == AUTOGROUP and self.name == which


@dataclass(frozen=True, slots=True)
class DstEntry:
    """An ACL destination ``alias:ports``."""

    alias: Alias
    ports: tuple[PortRange, ...]


@dataclass(frozen=True, slots=True)
class Acl:
    action: str
    proto: str                      # canonical protocol name or number text; "" = any
    src: tuple[Alias, ...]
    dst: tuple[DstEntry, ...]


@dataclass(frozen=True, slots=True)
class IpEntry:
    """One ``ip`` element of a grant: protocol plus port ranges."""

    proto: str                      # "" or "*" = the client default set
    ports: tuple[PortRange, ...]


@dataclass(frozen=True, slots=True)
class Grant:
    src: tuple[Alias, ...]
    dst: tuple[Alias, ...]
    ip: tuple[IpEntry, ...] = ()
    app: Mapping[str, tuple[Any, ...]] | None = None   # peer capability -> JSON values
    via: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CheckPeriod:
    always: bool = False
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class SshRule:
    action: str                     # "accept" | "check"
    src: tuple[Alias, ...]
    dst: tuple[Alias, ...]
    users: tuple[str, ...]
    check_period: CheckPeriod | None = None
    accept_env: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class NodeAttr:
    targets: tuple[Alias, ...]
    attrs: tuple[str, ...]
    ip_pool: tuple[Network, ...] = ()


@dataclass(frozen=True, slots=True)
class AutoApprovers:
    routes: tuple[tuple[Network, tuple[Alias, ...]], ...] = ()
    exit_node: tuple[Alias, ...] = ()


@dataclass(frozen=True, slots=True)
class PolicyTest:
    src: str
    proto: str
    accept: tuple[str, ...]
    deny: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SshTest:
    src: Alias | None
    dst: tuple[Alias, ...]
    accept: tuple[str, ...]
    deny: tuple[str, ...]
    check: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Policy:
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=frozen_map)
    hosts: Mapping[str, Network] = field(default_factory=frozen_map)
    tag_owners: Mapping[str, tuple[Alias, ...]] = field(default_factory=frozen_map)
    acls: tuple[Acl, ...] = ()
    grants: tuple[Grant, ...] = ()
    # True when "acls" or "grants" is present (even empty): absent means allow-all (§5.4).
    has_filter: bool = False
    node_attrs: tuple[NodeAttr, ...] = ()
    auto_approvers: AutoApprovers = AutoApprovers()
    ssh: tuple[SshRule, ...] = ()
    has_ssh: bool = False
    tests: tuple[PolicyTest, ...] = ()
    ssh_tests: tuple[SshTest, ...] = ()
    randomize_client_port: bool = False
    # Old-style spellings read as today's (app/core/policy/legacy.py): one line each, to log.
    warnings: tuple[str, ...] = field(default=(), compare=False)
