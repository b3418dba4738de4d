"""What clients report about themselves, made into values every peer can decode.

A node's Hostinfo and Endpoints are echoed to every peer in ``Node.Hostinfo`` and
``Node.Endpoints``. Go clients decode a whole MapResponse with encoding/json, so one field of
the wrong type (``"NetInfo": "x"``, an endpoint that is not ``ip:port``) would make every
peer's map fail to decode, and our own map building reads some of these fields too. So each
value is checked against the type tailcfg gives it (``ts:tailcfg/tailcfg.go`` Hostinfo,
NetInfo, Service, Location, TPMInfo) and:

* a field of the wrong type, a list entry that does not parse, a null: dropped;
* a field name tailcfg does not have: dropped (headscale keeps only tailcfg's fields too);
* field names match case-insensitively and come out in tailcfg's spelling, as Go decodes.

The functions return the cleaned value and the names of what was dropped, so the caller can
say so in one log line. Input must already be JSON-decoded (``app.core.jsonsafe.loads``).
"""

from __future__ import annotations

import math
import socket
from collections.abc import Callable
from typing import Any

INT64 = (-(1 << 63), (1 << 63) - 1)
MAX_PORT = 65535
MAX_LIST = 1024          # entries kept per list field; real clients send a handful

UNKNOWN = " (unknown field)"   # suffix of names tailcfg does not have: normal for newer clients
# A checker returns the value to keep or _DROP; ``name`` (the field's path) is only for naming
# what inner checkers drop. Scalars are plain type specs, checked inline (this runs for every
# node row read, so it is kept cheap).
Checker = Callable[[Any, str, list[str]], Any]
_DROP = object()


class _Scalar:
    """A JSON scalar of exactly these Python types (bool is not an int here)."""

    __slots__ = ("hi", "lo", "types")

    def __init__(self, *types: type, lo: int | None = None, hi: int | None = None) -> None:
        self.types, self.lo, self.hi = frozenset(types), lo, hi

    def ok(self, v: Any) -> bool:
        if type(v) not in self.types:
            return False
        if type(v) is str:
            return "\x00" not in v   # PostgreSQL cannot store it; no real client sends it
        if self.lo is not None and type(v) is int:
            return self.lo <= v <= self.hi   # type: ignore[operator]
        if type(v) is float:
            return math.isfinite(v)
        return True


_str = _Scalar(str)
_bool = _Scalar(bool)
_opt_bool = _bool    # opt.Bool is JSON true/false/null; null is dropped like every null
_int = _Scalar(int, lo=INT64[0], hi=INT64[1])
_uint64 = _Scalar(int, lo=0, hi=(1 << 64) - 1)
_port = _Scalar(int, lo=0, hi=MAX_PORT)
_float = _Scalar(int, float, lo=-(1 << 1023), hi=1 << 1023)


def _list_of(item: Any) -> Checker:
    def check(v: Any, name: str, dropped: list[str]) -> Any:
        if type(v) is not list:
            return _DROP
        out = []
        for i, entry in enumerate(v[:MAX_LIST]):
            if item.__class__ is _Scalar:
                good = entry if item.ok(entry) else _DROP
            else:
                good = item(entry, f"{name}[{i}]", dropped)
            if good is _DROP:
                dropped.append(f"{name}[{i}]")
            else:
                out.append(good)
        if len(v) > MAX_LIST:
            dropped.append(f"{name}[{MAX_LIST}:]")
        return out
    return check


def _struct(fields: dict[str, Any]) -> Checker:
    canonical = {k.lower(): k for k in fields}
    # Strings and booleans are checked inline (this runs for every row read).
    exact = {k: next(iter(v.types)) for k, v in fields.items()
             if v.__class__ is _Scalar and v.types in ({bool}, {str})}

    def check(v: Any, name: str, dropped: list[str]) -> Any:
        if type(v) is not dict:
            return _DROP
        out: dict[str, Any] = {}
        for key, value in v.items():
            spec = fields.get(key)
            field = key
            if spec is None:   # Go matches names case-insensitively
                field = canonical.get(str(key).lower())
                if field is None:
                    dropped.append((f"{name}.{key}" if name else str(key)) + UNKNOWN)
                    continue
                spec = fields[field]
            if value is None:
                out.pop(field, None)
                continue
            t = exact.get(field)
            if t is str:
                good = value if type(value) is str and "\x00" not in value else _DROP
            elif t is not None:
                good = value if type(value) is t else _DROP
            elif spec.__class__ is _Scalar:
                good = value if spec.ok(value) else _DROP
            else:
                good = spec(value, f"{name}.{field}" if name else field, dropped)
            if good is _DROP:
                dropped.append(f"{name}.{key}" if name else str(key))
                out.pop(field, None)
            else:
                out[field] = good
        return out
    return check


def ip_version(text: Any, *, zone: bool = False) -> int:
    """4 or 6 when ``text`` is an address as Go's netip.ParseAddr takes it (an IPv6 zone only
    with ``zone``), else 0. inet_pton is a pure conversion, and much faster than ipaddress."""
    if type(text) is not str:
        return 0
    try:
        socket.inet_pton(socket.AF_INET, text)
        return 4
    except (OSError, ValueError, UnicodeError):
        pass
    if zone:
        text, sep, name = text.partition("%")
        if sep and not name:
            return 0
    try:
        socket.inet_pton(socket.AF_INET6, text)
        return 6
    except (OSError, ValueError, UnicodeError):
        return 0


def valid_prefix(text: Any) -> bool:
    """``addr/bits`` as Go's netip.ParsePrefix takes it (no bare address, no netmask form)."""
    if type(text) is not str:
        return False
    addr, sep, bits = text.partition("/")
    if not sep or not (bits.isascii() and bits.isdigit()) or len(bits) > 3:
        return False
    version = ip_version(addr)
    return version != 0 and int(bits) <= (32 if version == 4 else 128)


def valid_endpoint(text: Any) -> bool:
    """``ip:port`` or ``[ipv6]:port`` as Go's netip.ParseAddrPort takes it."""
    if type(text) is not str:
        return False
    host, sep, port = text.rpartition(":")
    if not sep or not (port.isascii() and port.isdigit()) or len(port) > 5 or int(port) > MAX_PORT:
        return False
    if host.startswith("[") and host.endswith("]"):
        return ip_version(host[1:-1], zone=True) == 6
    return ip_version(host) == 4


def _prefix(v: Any, name: str, dropped: list[str]) -> Any:
    return v if valid_prefix(v) else _DROP


def _derp_latency(v: Any, name: str, dropped: list[str]) -> Any:
    if type(v) is not dict:
        return _DROP
    out = {}
    for k, lat in v.items():
        if _float.ok(lat):
            out[k] = lat
        else:
            dropped.append(f"{name}.{k}")
    return out


NETINFO = _struct({
    "MappingVariesByDestIP": _opt_bool, "HairPinning": _opt_bool, "WorkingIPv6": _opt_bool,
    "OSHasIPv6": _opt_bool, "WorkingUDP": _opt_bool, "WorkingICMPv4": _opt_bool,
    "HavePortMap": _bool, "UPnP": _opt_bool, "PMP": _opt_bool, "PCP": _opt_bool,
    "PreferredDERP": _int, "LinkType": _str, "DERPLatency": _derp_latency, "FirewallMode": _str,
})
SERVICE = _struct({"Proto": _str, "Port": _port, "Description": _str})
LOCATION = _struct({
    "Country": _str, "CountryCode": _str, "City": _str, "CityCode": _str,
    "Latitude": _float, "Longitude": _float, "Priority": _int,
})
TPM = _struct({"Manufacturer": _str, "Vendor": _str, "Model": _int, "FirmwareVersion": _uint64,
               "SpecRevision": _int})
HOSTINFO = _struct({
    "IPNVersion": _str, "FrontendLogID": _str, "BackendLogID": _str, "OS": _str, "OSVersion": _str,
    "Container": _opt_bool, "Env": _str, "Distro": _str, "DistroVersion": _str, "DistroCodeName": _str,
    "App": _str, "Desktop": _opt_bool, "Package": _str, "DeviceModel": _str, "PushDeviceToken": _str,
    "Hostname": _str, "ShieldsUp": _bool, "ShareeNode": _bool, "NoLogsNoSupport": _bool,
    "WireIngress": _bool, "IngressEnabled": _bool, "AllowsUpdate": _bool, "Machine": _str,
    "GoArch": _str, "GoArchVar": _str, "GoVersion": _str,
    "RoutableIPs": _list_of(_prefix), "RequestTags": _list_of(_str), "WoLMACs": _list_of(_str),
    "Services": _list_of(SERVICE), "NetInfo": NETINFO, "sshHostKeys": _list_of(_str),
    "Cloud": _str, "Userspace": _opt_bool, "UserspaceRouter": _opt_bool, "AppConnector": _opt_bool,
    "ServicesHash": _str, "ExitNodeID": _str, "Location": LOCATION, "TPM": TPM,
    "StateEncrypted": _opt_bool,
})


def normalise_hostinfo(value: Any, dropped: list[str] | None = None) -> dict[str, Any] | None:
    """A Hostinfo every peer can decode, or None when ``value`` is not an object at all.

    Names of what was removed are appended to ``dropped`` (``NetInfo.PreferredDERP``,
    ``RoutableIPs[0]``, ``Hostinfo`` for a non-object).
    """
    sink: list[str] = [] if dropped is None else dropped
    if value is None:
        return None
    out = HOSTINFO(value, "", sink)
    if out is _DROP:
        sink.append("Hostinfo")
        return None
    return out


def normalise_endpoints(value: Any, dropped: list[str] | None = None) -> list[str]:
    """The entries of ``value`` that are ``ip:port`` strings (others named in ``dropped``)."""
    sink: list[str] = [] if dropped is None else dropped
    if not isinstance(value, list):
        if value is not None:
            sink.append("Endpoints")
        return []
    out = []
    for i, ep in enumerate(value[:MAX_LIST]):
        if valid_endpoint(ep):
            out.append(ep)
        else:
            sink.append(f"Endpoints[{i}]")
    return out


def only_unknown(dropped: list[str]) -> bool:
    """Whether everything dropped was merely a field this server does not know."""
    return all(d.endswith(UNKNOWN) for d in dropped)


def summary(dropped: list[str], limit: int = 8) -> str:
    """``a, b, c (+N more)`` for a log line of bounded length (client text escaped)."""
    shown = ", ".join(repr(d[:80])[1:-1] for d in dropped[:limit])
    return shown + (f" (+{len(dropped) - limit} more)" if len(dropped) > limit else "")
