"""The real client address of a request: THE place that decides it (``trusted_proxies``).

Behind a reverse proxy every connection comes from the proxy; the proxy names the client in
``X-Forwarded-For`` (a comma-separated chain, each proxy appending the address it saw),
``X-Real-IP`` or ``True-Client-IP``. Those headers are believed only when the connection
itself comes from an address inside ``trusted_proxies``; from anyone else they are ignored,
so a client cannot choose the address it is logged, limited or shown under.

For ``X-Forwarded-For`` the chain is read from the right: the first hop that is not itself a
trusted proxy is the client (a client that forges the header only adds entries on the left,
which are never reached while an untrusted hop stands to their right). Then ``X-Real-IP``,
then ``True-Client-IP``. A malformed value is skipped, never trusted.

Use ``client_address(peer_ip, headers)`` with the socket's peer address, or the adapters
``peer_address(peername, headers)`` (raw streams: TS2021, DERP, the edge) and
``request_address(request)`` (Quart routes). ``configure`` is called once at start.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_trusted: tuple[_Network, ...] = ()


def configure(prefixes: Iterable[str]) -> None:
    """Set the trusted proxies (CIDRs, validated by the config loader)."""
    global _trusted
    _trusted = tuple(ipaddress.ip_network(p, strict=False) for p in prefixes or ())


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip().strip('"')
    if text.startswith("[") and "]" in text:          # "[2001:db8::1]:443"
        text = text[1:text.index("]")]
    elif text.count(":") == 1:                           # "192.0.2.1:443"
        text = text.split(":", 1)[0]
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def is_trusted(ip: str) -> bool:
    addr = _ip(ip)
    return addr is not None and any(addr in net for net in _trusted)


def client_address(peer_ip: str, headers: Mapping[str, str]) -> str:
    """The address of the client behind ``peer_ip``. ``headers`` has lower-case names."""
    if not _trusted or not is_trusted(peer_ip):
        return peer_ip
    chain = headers.get("x-forwarded-for", "")
    if chain:
        hops = [_ip(h) for h in chain.split(",")]
        for hop in reversed(hops):
            if hop is None:
                break              # a malformed hop: nothing left of it can be believed
            if not any(hop in net for net in _trusted):
                return str(hop)
        else:
            # Every hop is a trusted proxy: the leftmost is as far as the chain goes.
            if hops and hops[0] is not None:
                return str(hops[0])
    for name in ("x-real-ip", "true-client-ip"):
        addr = _ip(headers.get(name, ""))
        if addr is not None:
            return str(addr)
    return peer_ip


def peer_address(peername: Any, headers: Mapping[str, str] | None = None) -> str:
    """For raw streams: ``peername`` as asyncio reports it (a tuple for TCP, a path or empty for
    a unix socket, which is the local admin: "local")."""
    if isinstance(peername, tuple) and peername:
        return client_address(str(peername[0]), headers or {})
    return "local"


def request_address(request: Any) -> str:
    """For Quart (ASGI) requests."""
    client = request.scope.get("client")
    if not client:
        return "local"
    headers = {k.lower(): v for k, v in request.headers.items()}
    return client_address(str(client[0]), headers)
