"""Tailnet address allocation (headscale's rules, PROTOCOL.md 4.9).

One address per configured family, from ``prefixes.v4``/``prefixes.v6``, ``sequential`` (the
lowest free address) or ``random`` (a random free address, from an injected RNG). Network and
broadcast addresses and Tailscale's reserved addresses are never handed out; an address is
never reused while allocated.
"""

from __future__ import annotations

import ipaddress
import random as _random
from collections.abc import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

RESERVED_ADDRESSES = frozenset(
    {ipaddress.ip_address("100.100.100.100"), ipaddress.ip_address("fd7a:115c:a1e0::53")}
)
RESERVED_NETWORKS = (ipaddress.ip_network("100.115.92.0/23"),)  # ChromeOS VM range


class AddressesExhausted(Exception):
    def __init__(self, prefix: IPNetwork) -> None:
        super().__init__(f"no free address left in {prefix}")
        self.prefix = prefix


def _usable(addr: IPAddress, net: IPNetwork) -> bool:
    if addr in RESERVED_ADDRESSES or any(addr in r for r in RESERVED_NETWORKS):
        return False
    return not (net.num_addresses > 2 and addr in (net.network_address, net.broadcast_address))


class Allocator:
    """Tracks used addresses of one prefix and hands out free ones."""

    def __init__(self, prefix: str, strategy: str = "sequential", rng: _random.Random | None = None):
        self.network: IPNetwork = ipaddress.ip_network(prefix, strict=False)
        self.strategy = strategy
        self.rng = rng or _random.Random()
        self.used: set[IPAddress] = set()
        self._cursor = int(self.network.network_address) + 1

    def mark_used(self, addrs: Iterable[str | None]) -> None:
        for a in addrs:
            if a:
                ip = ipaddress.ip_address(a)
                if ip.version == self.network.version:
                    self.used.add(ip)

    def release(self, addr: str | None) -> None:
        if addr:
            self.used.discard(ipaddress.ip_address(addr))

    def allocate(self) -> str:
        ip = self._random() if self.strategy == "random" else self._sequential()
        self.used.add(ip)
        return str(ip)

    def _sequential(self) -> IPAddress:
        first = int(self.network.network_address)
        last = int(self.network.broadcast_address)
        size = last - first + 1
        # Scan forward from the cursor, wrapping once: O(1) amortised for fresh tailnets.
        for step in range(size):
            value = first + (self._cursor - first + step) % size
            ip = ipaddress.ip_address(value)
            if ip not in self.used and _usable(ip, self.network):
                self._cursor = value + 1
                return ip
        raise AddressesExhausted(self.network)

    def _random(self) -> IPAddress:
        first = int(self.network.network_address)
        size = self.network.num_addresses
        for _ in range(256):
            ip = ipaddress.ip_address(first + self.rng.randrange(size))
            if ip not in self.used and _usable(ip, self.network):
                return ip
        return self._sequential()  # nearly full: fall back to a scan
