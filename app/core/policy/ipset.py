"""Address sets as sorted integer intervals, and their wire spellings.

Both families live on one number line so a set is a single sorted tuple of inclusive
``(lo, hi)`` intervals: IPv4 addresses map to ``[0, 2**32)`` and IPv6 addresses to
``[2**32, 2**32 + 2**128)``.

Intervals that merely touch are *not* merged. Tailscale lists two consecutive node
addresses (``100.64.0.15``, ``100.64.0.16``) as two entries, not as the range
``100.64.0.15-100.64.0.16``; keeping touching intervals apart reproduces that, while
overlapping ones (a node address inside a CIDR source) are folded together.

Rendering (``strings()``) follows the ``SrcIPs``/``DstPorts[].IP`` grammar (PROTOCOL.md
§5.1): a single address bare, an exact CIDR as ``a/n``, anything else as ``first-last``.
"""

from __future__ import annotations

import ipaddress
from bisect import bisect_right
from collections.abc import Iterable

__all__ = [
    "ALL",
    "CGNAT",
    "EMPTY",
    "INTERNET",
    "TAILSCALE_ULA",
    "V6_BASE",
    "WILDCARD",
    "AddrSet",
    "addr_to_int",
    "int_to_addr",
    "interval_of",
    "network_str",
    "parse_prefix",
    "prefix_interval",
]

V6_BASE = 1 << 32
_V4_MAX = (1 << 32) - 1
_V6_MAX = V6_BASE + (1 << 128) - 1

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def addr_to_int(addr: Address) -> int:
    return int(addr) if addr.version == 4 else V6_BASE + int(addr)


def int_to_addr(value: int) -> Address:
    if value < V6_BASE:
        return ipaddress.IPv4Address(value)
    return ipaddress.IPv6Address(value - V6_BASE)


def prefix_interval(net: Network) -> tuple[int, int]:
    lo = addr_to_int(net.network_address)
    return lo, lo + net.num_addresses - 1


def parse_prefix(text: str) -> Network:
    """An IP (as a host prefix) or a CIDR; host bits are masked off like Go's IPSet does."""
    if "/" in text:
        return ipaddress.ip_network(text, strict=False)
    addr = ipaddress.ip_address(text)
    return ipaddress.ip_network((addr, addr.max_prefixlen))


def interval_of(text: str) -> tuple[int, int]:
    """Parse one wire entry: ``*``, an IP, a CIDR or ``a-b``."""
    if text == "*":
        raise ValueError("'*' spans both families; use ALL")
    if "-" in text and "/" not in text:
        first, last = text.split("-", 1)
        lo = addr_to_int(ipaddress.ip_address(first))
        hi = addr_to_int(ipaddress.ip_address(last))
        if (lo < V6_BASE) != (hi < V6_BASE) or lo > hi:
            raise ValueError(f"invalid range {text!r}")
        return lo, hi
    return prefix_interval(parse_prefix(text))


def network_str(net: Network) -> str:
    """A prefix as Go prints it: host prefixes keep their length (``1.2.3.4/32``)."""
    return f"{net.network_address}/{net.prefixlen}"


def _single_prefix(lo: int, hi: int) -> Network | None:
    size = hi - lo + 1
    base = 0 if lo < V6_BASE else V6_BASE
    if size & (size - 1) or (lo - base) % size:
        return None
    bits = size.bit_length() - 1
    if not base:
        return ipaddress.IPv4Network((lo, 32 - bits))
    return ipaddress.IPv6Network((lo - base, 128 - bits))


def _interval_str(lo: int, hi: int) -> str:
    if lo == hi:
        return str(int_to_addr(lo))
    net = _single_prefix(lo, hi)
    if net is not None:
        return network_str(net)
    return f"{int_to_addr(lo)}-{int_to_addr(hi)}"


def _split_interval(lo: int, hi: int) -> list[Network]:
    if lo < V6_BASE:
        return list(ipaddress.summarize_address_range(ipaddress.IPv4Address(lo), ipaddress.IPv4Address(hi)))
    return list(ipaddress.summarize_address_range(
        ipaddress.IPv6Address(lo - V6_BASE), ipaddress.IPv6Address(hi - V6_BASE)))


def _normalise(items: Iterable[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Sort and fold overlapping intervals (touching ones stay apart)."""
    out: list[list[int]] = []
    for lo, hi in sorted(items):
        if out and lo <= out[-1][1]:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return tuple((lo, hi) for lo, hi in out)


class AddrSet:
    """An immutable set of addresses (see module docstring)."""

    __slots__ = ("_los", "_merged", "_mlos", "ivs")

    def __init__(self, intervals: Iterable[tuple[int, int]] = (), *, _normalised: bool = False) -> None:
        self.ivs: tuple[tuple[int, int], ...] = (
            tuple(intervals) if _normalised else _normalise(intervals))
        self._los: list[int] | None = None
        self._merged: tuple[tuple[int, int], ...] | None = None
        self._mlos: list[int] | None = None

    # --- construction -------------------------------------------------
    @classmethod
    def of_addrs(cls, addrs: Iterable[int]) -> AddrSet:
        # single addresses, sorted and without repeats, are already normal (touching ones
        # stay apart): no folding pass (an alias can cover every node of a large tailnet)
        return cls([(a, a) for a in sorted(set(addrs))], _normalised=True)

    @classmethod
    def of_networks(cls, nets: Iterable[Network]) -> AddrSet:
        return cls(prefix_interval(n) for n in nets)

    @classmethod
    def parse(cls, text: str) -> AddrSet:
        return ALL if text == "*" else cls([interval_of(text)])

    def union(self, *others: AddrSet) -> AddrSet:
        items = list(self.ivs)
        for o in others:
            items.extend(o.ivs)
        return AddrSet(items)

    def minus(self, other: AddrSet) -> AddrSet:
        out: list[tuple[int, int]] = []
        cut = other.merged()
        for lo, hi in self.ivs:
            cur = lo
            for clo, chi in cut:
                if chi < cur or clo > hi:
                    continue
                if clo > cur:
                    out.append((cur, clo - 1))
                cur = max(cur, chi + 1)
                if cur > hi:
                    break
            if cur <= hi:
                out.append((cur, hi))
        return AddrSet(out)

    # --- queries -------------------------------------------------------
    def __bool__(self) -> bool:
        return bool(self.ivs)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AddrSet) and self.merged() == other.merged()

    def __hash__(self) -> int:
        return hash(self.merged())

    def __repr__(self) -> str:
        return f"AddrSet({self.strings()!r})"

    def merged(self) -> tuple[tuple[int, int], ...]:
        """The canonical form: touching intervals joined too."""
        if self._merged is None:
            out: list[list[int]] = []
            for lo, hi in self.ivs:
                if out and lo <= out[-1][1] + 1 and (lo < V6_BASE) == (out[-1][0] < V6_BASE):
                    out[-1][1] = max(out[-1][1], hi)
                else:
                    out.append([lo, hi])
            self._merged = tuple((a, b) for a, b in out)
        return self._merged

    def _starts(self) -> list[int]:
        if self._los is None:
            self._los = [lo for lo, _ in self.ivs]
        return self._los

    def contains(self, value: int) -> bool:
        i = bisect_right(self._starts(), value) - 1
        return i >= 0 and self.ivs[i][1] >= value

    def contains_any(self, values: Iterable[int]) -> bool:
        return any(self.contains(v) for v in values)

    def overlaps(self, lo: int, hi: int) -> bool:
        i = bisect_right(self._starts(), hi) - 1
        # ivs are disjoint and sorted, so their ends are sorted too
        return i >= 0 and self.ivs[i][1] >= lo

    def overlaps_set(self, other: AddrSet) -> bool:
        small, big = (self, other) if len(self.ivs) <= len(other.ivs) else (other, self)
        return any(big.overlaps(lo, hi) for lo, hi in small.ivs)

    def covers(self, lo: int, hi: int) -> bool:
        """True when every address of [lo, hi] is in the set."""
        m = self.merged()
        if self._mlos is None:
            self._mlos = [a for a, _ in m]
        i = bisect_right(self._mlos, lo) - 1
        return i >= 0 and m[i][1] >= hi

    def issubset(self, other: AddrSet) -> bool:
        return all(other.covers(lo, hi) for lo, hi in self.merged())

    # --- rendering -----------------------------------------------------
    def strings(self, names: dict[int, str] | None = None) -> list[str]:
        """Wire spellings; ``names`` maps known single addresses to their text (fast path)."""
        if names is None:
            return [_interval_str(lo, hi) for lo, hi in self.ivs]
        out = []
        for lo, hi in self.ivs:
            text = names.get(lo) if lo == hi else None
            out.append(text if text is not None else _interval_str(lo, hi))
        return out

    def range_strings(self) -> list[str]:
        """Like ``strings`` but never collapsing a range to CIDR form (how Tailscale spells
        autogroup:internet)."""
        return [str(int_to_addr(lo)) if lo == hi else f"{int_to_addr(lo)}-{int_to_addr(hi)}"
                for lo, hi in self.ivs]

    def prefixes(self) -> list[Network]:
        out: list[Network] = []
        for lo, hi in self.ivs:
            out.extend(_split_interval(lo, hi))
        return out

    def addresses(self) -> Iterable[int]:
        for lo, hi in self.ivs:
            yield from range(lo, hi + 1)


EMPTY = AddrSet()
ALL = AddrSet([(0, _V4_MAX), (V6_BASE, _V6_MAX)])
CGNAT = AddrSet.of_networks([ipaddress.ip_network("100.64.0.0/10")])
TAILSCALE_ULA = AddrSet.of_networks([ipaddress.ip_network("fd7a:115c:a1e0::/48")])
_CHROMEOS_VM = AddrSet.of_networks([ipaddress.ip_network("100.115.92.0/23")])

# "*" as a source: the tailnet's own address space (PROTOCOL.md §5.3).
WILDCARD = CGNAT.union(TAILSCALE_ULA).minus(_CHROMEOS_VM)

# autogroup:internet: everything except private, CGNAT, Tailscale and link-local space.
INTERNET = AddrSet.of_networks(
    [ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("2000::/3")]
).minus(AddrSet.of_networks(ipaddress.ip_network(p) for p in (
    "fc00::/7", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fd7a:115c:a1e0::/48",
    "100.64.0.0/10", "fe80::/10", "169.254.0.0/16",
)))
