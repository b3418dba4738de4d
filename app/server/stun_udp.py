"""UDP STUN listener: datagrams -> app.core.stun -> replies. Malformed datagrams are dropped."""

from __future__ import annotations

import asyncio
import logging

from app.core import stun

log = logging.getLogger("stun")


class StunProtocol(asyncio.DatagramProtocol):
    """Answers Binding Requests; counts what it sees for metrics."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.requests = 0  # datagrams received
        self.responses = 0  # Binding Success responses sent
        self.dropped = 0  # datagrams that were not a usable Binding Request
        self.last_request = b""  # the last Binding Request answered (for /debug/derp)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self.requests += 1
        reply = stun.handle_datagram(data, addr[0], addr[1])
        if reply is None or self.transport is None:
            self.dropped += 1
            return
        self.transport.sendto(reply, addr)
        self.responses += 1
        self.last_request = bytes(data[:64])

    def error_received(self, exc: Exception) -> None:
        # ICMP errors for earlier replies (client gone): nothing to do, keep serving.
        log.debug("stun: %s", exc)


async def start_stun(host: str, port: int) -> asyncio.DatagramTransport:
    """Listen on ``host:port`` (UDP). ``transport.get_protocol()`` has the counters.

    With ``host="::"`` Linux also accepts IPv4 (as v4-mapped peers, answered as family 1).
    """
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(StunProtocol, local_addr=(host, port))
    return transport
