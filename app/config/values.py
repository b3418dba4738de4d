"""Value types of the settings table: raw YAML / env text in, a typed immutable value out.

Every type has ``parse(raw, from_env)`` (raises ``ValueError`` with a short reason that never
repeats the offending value, so secrets cannot leak into error messages), ``dump(value)`` (back
to a YAML-level value that ``parse`` accepts again) and a ``name`` for the generated docs.

Durations follow Go's ``time.ParseDuration`` plus Prometheus' ``d``/``w``/``y`` units
(headscale uses the latter for ``node.expiry`` and the CLI's ``--expiration``), and turn into
float seconds. ``0`` is the only unit-less duration accepted: Go would read ``1800`` as 1800
*nanoseconds*, which is never what anyone meant.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

import yaml

__all__ = [
    "format_duration",
    "parse_duration",
    "split_list",
]

class Invalid(ValueError):
    """A value that cannot be used; the message is a short reason without the value."""


_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 7 * 86400.0,
    "y": 365 * 86400.0,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h|d|w|y)")


def parse_duration(text: str | float) -> float:
    """``"1h30m"`` → 5400.0, ``"800ms"`` → 0.8, ``"90d"`` → 7776000.0, ``"0"``/``0`` → 0.0."""
    if isinstance(text, bool):
        raise Invalid("expected a duration such as 30s, 15m, 1h30m or 90d")
    if isinstance(text, (int, float)):
        if text == 0:
            return 0.0
        raise Invalid("a duration needs a unit (for example 30s, 15m, 1h30m, 90d)")
    s = str(text).strip()
    if s in ("0", "+0", "-0"):
        return 0.0
    sign = 1.0
    if s[:1] in "+-" and s:
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if not s:
        raise Invalid("expected a duration such as 30s, 15m, 1h30m or 90d")
    pos, total = 0, 0.0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if not m:
            if re.fullmatch(r"\d+(\.\d*)?", s):
                raise Invalid("a duration needs a unit (for example 30s, 15m, 1h30m, 90d)")
            raise Invalid("expected a duration such as 30s, 15m, 1h30m or 90d")
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    return sign * total


def format_duration(seconds: float) -> str:
    """Inverse of :func:`parse_duration` in Go's style: 5400 → ``1h30m``, 0.8 → ``800ms``."""
    if seconds == 0:
        return "0s"
    sign = "-" if seconds < 0 else ""
    rest = abs(seconds)
    whole = int(rest)
    frac = rest - whole
    if whole == 0:
        ms = frac * 1000
        if abs(ms - round(ms)) < 1e-6:
            return f"{sign}{round(ms)}ms"
        return f"{sign}{frac * 1e6:g}us"
    out = []
    h, rem = divmod(whole, 3600)
    m, s = divmod(rem, 60)
    if h:
        out.append(f"{h}h")
    if m:
        out.append(f"{m}m")
    if s or frac:
        out.append(f"{s + frac:g}s" if frac else f"{s}s")
    return sign + "".join(out)


def split_list(text: str) -> tuple[str, ...]:
    """An env value for a list: a JSON/YAML flow list, or items split on commas and whitespace."""
    t = text.strip()
    if t.startswith("["):
        try:
            data = yaml.safe_load(t)
        except yaml.YAMLError:
            raise Invalid("expected a list such as [a, b] or a,b") from None
        if not isinstance(data, list):
            raise Invalid("expected a list")
        return tuple(_scalar_text(x) for x in data)
    return tuple(p for p in re.split(r"[,\s]+", t) if p)


def _scalar_text(x: Any) -> str:
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, (str, int, float)):
        return str(x)
    raise Invalid("expected a list of strings")


# --- the types --------------------------------------------------------------------------------


class ValueType:
    name = "value"
    is_path = False

    def parse(self, raw: Any, from_env: bool) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    def dump(self, value: Any) -> Any:
        return value


@dataclass(frozen=True)
class Str(ValueType):
    name: str = "string"

    def parse(self, raw: Any, from_env: bool) -> str:
        if raw is None:
            return ""
        if isinstance(raw, (list, dict)):
            raise Invalid("expected a string")
        return _scalar_text(raw)


@dataclass(frozen=True)
class Path(Str):
    """A file path; a relative path is taken relative to the config file's directory."""

    name: str = "path"
    is_path: bool = True


_TRUE = {"1", "t", "true", "yes", "y", "on"}
_FALSE = {"0", "f", "false", "no", "n", "off", ""}


@dataclass(frozen=True)
class Bool(ValueType):
    name: str = "bool"

    def parse(self, raw: Any, from_env: bool) -> bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, int) and raw in (0, 1):
            return bool(raw)
        if isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
            return raw.strip().lower() in _TRUE
        raise Invalid("expected true or false")


@dataclass(frozen=True)
class Int(ValueType):
    name: str = "int"

    def parse(self, raw: Any, from_env: bool) -> int:
        if isinstance(raw, bool):
            raise Invalid("expected an integer")
        if isinstance(raw, int):
            return int(raw)
        if isinstance(raw, float) and raw.is_integer():
            return int(raw)
        if isinstance(raw, str) and re.fullmatch(r"\s*[+-]?\d+\s*", raw):
            return int(raw)
        raise Invalid("expected an integer")


@dataclass(frozen=True)
class Duration(ValueType):
    name: str = "duration"

    def parse(self, raw: Any, from_env: bool) -> float:
        if raw is None or raw == "":
            return 0.0
        return parse_duration(raw)

    def dump(self, value: float) -> str:
        return format_duration(value)


@dataclass(frozen=True)
class FileMode(ValueType):
    """Octal permission bits: ``"0770"``, ``"770"``, ``"0o770"`` (also YAML's unquoted 0770)."""

    name: str = "octal mode"

    def parse(self, raw: Any, from_env: bool) -> int:
        text = getattr(raw, "raw_text", None)  # the YAML loader keeps the literal of ints
        if text is None:
            if isinstance(raw, bool) or not isinstance(raw, (int, str)):
                raise Invalid("expected an octal file mode such as \"0770\"")
            text = str(raw)
        t = text.strip().lower()
        t = t.removeprefix("0o")
        if not re.fullmatch(r"[0-7]{1,4}", t.lstrip("0") or "0"):
            raise Invalid("expected an octal file mode such as \"0770\"")
        return int(t, 8)

    def dump(self, value: int) -> str:
        return f"0{value:o}" if value else "0"


@dataclass(frozen=True)
class URL(ValueType):
    name: str = "URL"
    schemes: tuple[str, ...] = ("http", "https")
    allow_empty: bool = True

    def parse(self, raw: Any, from_env: bool) -> str:
        value = Str().parse(raw, from_env).strip()
        if not value:
            if self.allow_empty:
                return ""
            raise Invalid("must be set")
        check_url(value, self.schemes)
        return value


def check_url(value: str, schemes: tuple[str, ...]) -> None:
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise Invalid("is not a valid URL") from None
    if parts.scheme not in schemes:
        want = " or ".join(f"{s}://" for s in schemes)
        raise Invalid(f"must start with {want}")
    if not parts.hostname:
        raise Invalid("has no host name")


@dataclass(frozen=True)
class HostPort(ValueType):
    """``host:port`` as Go's net.Listen takes it: ``0.0.0.0:8080``, ``:8080``, ``[::]:443``, ``:http``."""

    name: str = "host:port"
    allow_empty: bool = False

    def parse(self, raw: Any, from_env: bool) -> str:
        value = Str().parse(raw, from_env).strip()
        if not value:
            if self.allow_empty:
                return ""
            raise Invalid("must be set (host:port)")
        host, sep, port = value.rpartition(":")
        if not sep:
            raise Invalid("expected host:port, for example 0.0.0.0:8080")
        if host.startswith("["):
            if not host.endswith("]"):
                raise Invalid("expected host:port, for example [::]:8080")
            try:
                ipaddress.IPv6Address(host[1:-1].split("%")[0])
            except ValueError:
                raise Invalid("has an invalid IPv6 address") from None
        elif ":" in host:
            raise Invalid("an IPv6 host must be in brackets, for example [::1]:8080")
        if port.isdigit():
            if not 0 <= int(port) <= 65535:
                raise Invalid("port must be between 0 and 65535")
        elif not re.fullmatch(r"[a-z][a-z0-9-]*", port):
            raise Invalid("expected host:port, for example 0.0.0.0:8080")
        return value


@dataclass(frozen=True)
class Prefix(ValueType):
    name: str = "CIDR prefix"
    version: int = 4
    allow_empty: bool = True

    def parse(self, raw: Any, from_env: bool) -> str:
        value = Str().parse(raw, from_env).strip()
        if not value:
            if self.allow_empty:
                return ""
            raise Invalid("must be set")
        try:
            net = ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise Invalid(f"is not a valid IPv{self.version} prefix (CIDR)") from None
        if net.version != self.version or "/" not in value:
            raise Invalid(f"is not a valid IPv{self.version} prefix (CIDR)")
        return value


@dataclass(frozen=True)
class IP(ValueType):
    name: str = "IP address"
    version: int = 4

    def parse(self, raw: Any, from_env: bool) -> str:
        value = Str().parse(raw, from_env).strip()
        if not value:
            return ""
        try:
            addr = ipaddress.ip_address(value)
        except ValueError:
            raise Invalid(f"is not a valid IPv{self.version} address") from None
        if addr.version != self.version:
            raise Invalid(f"is not a valid IPv{self.version} address")
        return value


@dataclass(frozen=True)
class StrList(ValueType):
    name: str = "list of strings"

    def parse(self, raw: Any, from_env: bool) -> tuple[str, ...]:
        if raw is None:
            return ()
        if isinstance(raw, str):
            return split_list(raw)
        if isinstance(raw, (list, tuple)):
            return tuple(_scalar_text(x) for x in raw if x is not None)
        raise Invalid("expected a list of strings")

    def dump(self, value: tuple[str, ...]) -> list[str]:
        return list(value)


@dataclass(frozen=True)
class URLList(StrList):
    name: str = "list of URLs"

    def parse(self, raw: Any, from_env: bool) -> tuple[str, ...]:
        items = super().parse(raw, from_env)
        for i, item in enumerate(items):
            try:
                check_url(item, ("http", "https"))
            except ValueError as e:
                raise Invalid(f"item {i} {e}") from None
        return items


@dataclass(frozen=True)
class PrefixList(StrList):
    name: str = "list of CIDR prefixes"

    def parse(self, raw: Any, from_env: bool) -> tuple[str, ...]:
        items = super().parse(raw, from_env)
        for i, item in enumerate(items):
            try:
                net = ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise Invalid(f"item {i} ({item!r}) is not a valid CIDR prefix") from None
            if net.prefixlen == 0:
                raise Invalid(f"item {i} ({item!r}): 0.0.0.0/0 and ::/0 are not allowed")
        return items


def _env_structure(raw: Any) -> Any:
    """Maps and record lists come from env as JSON (viper/cast do the same)."""
    if isinstance(raw, str):
        try:
            return json.loads(raw) if raw.strip() else None
        except json.JSONDecodeError:
            raise Invalid("expected JSON") from None
    return raw


@dataclass(frozen=True)
class StrMap(ValueType):
    name: str = "map of strings"

    def parse(self, raw: Any, from_env: bool) -> MappingProxyType:
        raw = _env_structure(raw)
        if raw is None:
            return MappingProxyType({})
        if not isinstance(raw, dict):
            raise Invalid("expected a mapping")
        return MappingProxyType({str(k): _scalar_text(v) for k, v in raw.items()})

    def dump(self, value: Any) -> dict:
        return dict(value)


@dataclass(frozen=True)
class StrListMap(ValueType):
    name: str = "map of lists"

    def parse(self, raw: Any, from_env: bool) -> MappingProxyType:
        raw = _env_structure(raw)
        if raw is None:
            return MappingProxyType({})
        if not isinstance(raw, dict):
            raise Invalid("expected a mapping of name → list")
        out = {}
        for k, v in raw.items():
            if isinstance(v, (str, int, float)) and not isinstance(v, bool):
                out[str(k)] = (str(v),)
            elif isinstance(v, list):
                out[str(k)] = tuple(_scalar_text(x) for x in v)
            elif v is None:
                out[str(k)] = ()
            else:
                raise Invalid(f"entry {k!r} must be a list")
        return MappingProxyType(out)

    def dump(self, value: Any) -> dict:
        return {k: list(v) for k, v in value.items()}


@dataclass(frozen=True)
class Records(ValueType):
    """A list of small string mappings (``dns.extra_records``: name/type/value)."""

    name: str = "list of records"
    fields: tuple[str, ...] = ("name", "type", "value")

    def parse(self, raw: Any, from_env: bool) -> tuple[MappingProxyType, ...]:
        raw = _env_structure(raw)
        if raw is None:
            return ()
        if not isinstance(raw, list):
            raise Invalid("expected a list of {" + ", ".join(self.fields) + "} mappings")
        out = []
        for i, item in enumerate(raw):
            if not isinstance(item, dict):
                raise Invalid(f"item {i} must be a mapping with {', '.join(self.fields)}")
            unknown = sorted(set(map(str, item)) - set(self.fields))
            if unknown:
                raise Invalid(f"item {i} has unknown field(s) {', '.join(unknown)}")
            out.append(MappingProxyType({f: _scalar_text(item.get(f, "")) for f in self.fields}))
        return tuple(out)

    def dump(self, value: Any) -> list[dict]:
        return [dict(r) for r in value]
