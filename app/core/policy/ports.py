"""Ports, protocols and durations as written in a policy.

Error texts match the ones Tailscale's control plane returns (captured in the golden data),
so a policy rejected there is rejected here with the same words.
"""

from __future__ import annotations

import ipaddress
import re

from .model import ALL_PORTS, PortRange

__all__ = [
    "DEFAULT_PROTOCOLS",
    "PROTOCOLS",
    "PortError",
    "format_go_duration",
    "parse_go_duration",
    "parse_ports",
    "parse_protocol",
    "ports_text",
    "protocol_numbers",
    "split_dst",
]

_INT = re.compile(r"[+-]?[0-9]+")


class PortError(ValueError):
    pass


def _port(text: str) -> int:
    if not _INT.fullmatch(text):
        raise PortError("invalid first integer")
    value = int(text)
    if not 0 <= value <= 65535:
        raise PortError("port number out of range")
    return value


def parse_ports(text: str) -> tuple[PortRange, ...]:
    """``*``, ``N``, ``N-M`` or a comma list of those."""
    if text == "*":
        return (ALL_PORTS,)
    out: list[PortRange] = []
    for part in text.split(","):
        if "-" in part:
            bounds = [b for b in part.split("-") if b != ""]
            if len(bounds) != 2:
                raise PortError("invalid port range format")
            first, last = _port(bounds[0]), _port(bounds[1])
            if first > last:
                raise PortError("invalid port range: first port is greater than last port")
            out.append((first, last))
        else:
            port = _port(part)
            if port < 1:
                raise PortError("first port must be >0, or use '*' for wildcard")
            out.append((port, port))
    return tuple(out)


def ports_text(ports: tuple[PortRange, ...]) -> str:
    if ports == (ALL_PORTS,):
        return "*"
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in ports)


def split_dst(text: str) -> tuple[str, str]:
    """Split ``alias:ports`` at the last colon; ``[v6]:ports`` and ``[v6]/n:ports`` accepted."""
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise PortError("square brackets are only valid around IPv6 addresses")
        host = text[1:close]
        try:
            ok = ipaddress.ip_address(host).version == 6
        except ValueError:
            ok = False
        if not ok:
            raise PortError(f'square brackets are only valid around IPv6 addresses: "{host}"')
        rest = text[close + 1:]
        if not rest or rest[0] not in ":/":
            raise PortError(f'square brackets are only valid around IPv6 addresses: "{text}"')
        text = host + rest
    i = text.rfind(":")
    if i < 0:
        raise PortError("input must contain a colon character separating destination and port")
    if i == 0:
        raise PortError("input cannot start with a colon character")
    if i == len(text) - 1:
        raise PortError("input cannot end with a colon character")
    return text[:i], text[i + 1:]


# name -> IANA number (PROTOCOL.md §5.2)
PROTOCOLS: dict[str, int] = {
    "icmp": 1, "igmp": 2, "ipv4": 4, "ip-in-ip": 4, "tcp": 6, "egp": 8, "igp": 9, "udp": 17,
    "gre": 47, "esp": 50, "ah": 51, "ipv6-icmp": 58, "sctp": 132, "fc": 133,
}
_NUMBER_TO_NAME = {n: name for name, n in PROTOCOLS.items() if name != "ip-in-ip"}

# What the client assumes when IPProto is empty.
DEFAULT_PROTOCOLS = (6, 17, 1, 58)


def parse_protocol(text: str, *, canonical: bool = True) -> str:
    """Validate a protocol; returns its canonical form ("" for none).

    ACL ``proto`` is case-insensitive and numbers of named protocols become the name
    (``canonical``); a grant's ``ip`` prefix is taken verbatim, as headscale does.
    """
    value = text.lower() if canonical else text
    if canonical and _INT.fullmatch(value) and not value.startswith(("+", "-")):
        num = int(value)
        if 0 <= num <= 255 and num in _NUMBER_TO_NAME and not (len(value) > 1 and value[0] == "0"):
            value = _NUMBER_TO_NAME[num]
    if value == "" or value in PROTOCOLS:
        return value
    if value == "*":
        raise PortError('proto name "*" not known; use protocol number 0-255 or protocol name '
                        '(icmp, tcp, udp, etc.)')
    if value == "0" or (len(value) > 1 and value[0] == "0"):
        raise PortError(f'leading 0 not permitted in protocol number: "{value}"')
    if not re.fullmatch(r"-?[0-9]+", value):
        raise PortError(f'invalid protocol number: "{value}" must be a known protocol name or '
                        "valid protocol number 0-255")
    num = int(value)
    if not 0 <= num <= 255:
        raise PortError(f"protocol number out of range (0-255): {num}")
    return value


def protocol_numbers(proto: str) -> tuple[int, ...]:
    """IANA numbers for ``IPProto``; empty means "the client default set"."""
    if proto in ("", "*"):
        return ()
    if proto in PROTOCOLS:
        return (PROTOCOLS[proto],)
    return (int(proto),)


# --- Go time.Duration text ---------------------------------------------------

_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
          "m": 60_000_000_000, "h": 3_600_000_000_000}
_DURATION_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)")


def parse_go_duration(text: str) -> int:
    """Go ``time.ParseDuration``: returns nanoseconds; ValueError with Go's message."""
    err = ValueError(f'time: invalid duration "{text}"')
    s = text
    sign = 1
    if s and s[0] in "+-":
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise err
    total = 0
    pos = 0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if not m or m.group(1) in ("", "."):
            if m is None and re.match(r"[0-9.]+$", s[pos:]):
                raise ValueError(f'time: missing unit in duration "{text}"')
            raise err
        num, unit = m.group(1), m.group(2)
        whole, _, frac = num.partition(".")
        value = int(whole or "0") * _UNITS[unit]
        if frac:
            value += int(frac) * _UNITS[unit] // (10 ** len(frac))
        total += value
        pos = m.end()
    return sign * total


def format_go_duration(ns: int) -> str:
    """Go ``Duration.String`` for whole-second-or-coarser values (and smaller ones roughly)."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                value = ns / size
                text = f"{value:.9f}".rstrip("0").rstrip(".")
                return f"{sign}{text}{unit}"
    hours, rem = divmod(ns, 3_600_000_000_000)
    minutes, rem = divmod(rem, 60_000_000_000)
    seconds = rem / 1_000_000_000
    sec_text = f"{seconds:.9f}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{sec_text}"
    if minutes:
        return f"{sign}{minutes}m{sec_text}"
    return f"{sign}{sec_text}"
