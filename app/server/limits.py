"""Connection limits that hold before anyone has logged in.

Every listener of the edge (app/server/edge.py) counts its open connections per *source*:

- ``max_per_source`` connections per source address, all connection kinds together (plain
  HTTP, Noise, DERP). One more is closed at once, so one address flooding the port never
  takes the descriptors or the event loop from the others.
- a global cap: the process's open-file limit minus ``RESERVED_FDS`` (SQLite, logs, the
  listeners and the admin socket keep working when every connection slot is taken).

The source of a connection is ``source_key(peer, head)``: the peer's IP address (an IPv6
peer's /64), or behind a proxy listed in ``trusted_proxies`` the forwarded client address
(app/server/clientaddr.py). A trusted proxy is not limited when it connects;
``Admission.rekey`` moves the count to the client once the request head is known.

The timeouts per connection kind (``tuning.*_timeout``, docs/config.md) are applied where each
kind is served: the head timeout in the edge, HTTP keep-alive in hypercorn, Noise idleness in
app/server/ts2021.py, the DERP login deadline in app/server/derp_conn.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import ipaddress
import logging
import resource
from collections.abc import Callable
from typing import Any

from app.server.clientaddr import is_trusted, peer_address

log = logging.getLogger("headscale.limits")

RESERVED_FDS = 64


def raise_fd_limit() -> int:
    """Raise the soft open-file limit to the hard one (as Go programs do at start); return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return soft


def fd_budget() -> int:
    """How many connections the process may hold in total (the open-file limit minus a reserve)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1 << 20
    return max(16, soft - RESERVED_FDS)


def source_key(peer: Any, head: Any = None) -> str:
    """The address a connection counts against. ``peer`` is the socket's peername (a tuple for
    TCP, a string or empty for a unix socket: "local"); ``head`` is the parsed request head
    once known, whose forwarding headers count only from ``trusted_proxies``
    (app/server/clientaddr.py)."""
    headers = getattr(head, "headers", None) or {}
    addr = peer_address(peer, headers)
    return addr if addr == "local" else _address_key(addr)


def _address_key(addr: str) -> str:
    """IPv4 addresses count one by one; IPv6 by /64, the block one subscriber usually gets."""
    try:
        ip = ipaddress.ip_address(addr.split("%", 1)[0])
    except ValueError:
        return addr
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
    return str(ip)


class Admission:
    """Counts open connections per source; ``admit`` says whether one more may stay open."""

    def __init__(self, max_per_source: int, total: int | None = None,
                 key: Callable[[Any, Any], str] = source_key) -> None:
        self.max_per_source = max_per_source
        self.total_limit = fd_budget() if total is None else total
        self.key = key
        self.open: dict[str, int] = {}
        self.total = 0
        self.refused = 0
        self.released = 0   # connections closed so far (drives trim_memory_task)

    def admit(self, peer: Any) -> str | None:
        """The connection's key when it may stay, None when it must be closed now. A trusted
        proxy is not limited here: its clients are counted once their heads are read."""
        key = self.key(peer, None)
        n = self.open.get(key, 0)
        if self.total >= self.total_limit or (n >= self.max_per_source and self._limited(key, peer)):
            self.refused += 1
            return None
        self.open[key] = n + 1
        self.total += 1
        return key

    def rekey(self, key: str, peer: Any, head: Any) -> str | None:
        """Move a connection to the key its request head gives (the forwarded client behind a
        trusted proxy). None when that client already holds its share: close the connection."""
        new = self.key(peer, head)
        if new == key:
            return key
        if self.max_per_source and self.open.get(new, 0) >= self.max_per_source:
            self.refused += 1
            return None
        self._drop(key)
        self.open[new] = self.open.get(new, 0) + 1
        return new

    def _limited(self, key: str, peer: Any) -> bool:
        if not self.max_per_source or key == "local":
            return False
        return not (isinstance(peer, tuple) and peer and is_trusted(str(peer[0])))

    def release(self, key: str) -> None:
        self._drop(key)
        self.total -= 1
        self.released += 1

    def _drop(self, key: str) -> None:
        n = self.open.get(key, 0) - 1
        if n > 0:
            self.open[key] = n
        else:
            self.open.pop(key, None)


# glibc keeps freed heap memory mapped after a burst of big requests (measured: RSS 72 -> 127
# MiB after 200 x 3 MB requests, back to 79 MiB after malloc_trim). Trim after many connections
# have come and gone, in a worker thread so the loop keeps running.
TRIM_EVERY = 30.0
TRIM_AFTER_CLOSED = 50


def _malloc_trim() -> Callable[[], Any] | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        return libc.malloc_trim if libc is not None and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


async def trim_memory_task(admissions: list[Admission], every: float = TRIM_EVERY) -> None:
    trim = _malloc_trim()
    if trim is None:
        return
    seen = 0
    while True:
        await asyncio.sleep(every)
        released = sum(a.released for a in admissions)
        if released - seen >= TRIM_AFTER_CLOSED:
            seen = released
            await asyncio.to_thread(trim, 0)
