"""UDP STUN listener (app/server/stun_udp.py) on loopback, with the Tailscale-shaped request vector."""

import asyncio
import socket
from pathlib import Path

import pytest

from app.core import stun
from app.server.stun_udp import start_stun

REQUEST = bytes.fromhex(
    (Path(__file__).resolve().parent.parent / "vectors" / "stun" / "binding_request_tailnode.hex")
    .read_text()
    .strip()
)


class Collector(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.got: asyncio.Queue = asyncio.Queue()

    def datagram_received(self, data, addr) -> None:
        self.got.put_nowait((data, addr))


async def _client(family_host: str):
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(Collector, local_addr=(family_host, 0))
    return transport, proto


async def test_ipv4_binding_request_gets_xor_mapped_address():
    server = await start_stun("127.0.0.1", 0)
    addr = server.get_extra_info("sockname")
    client, proto = await _client("127.0.0.1")
    client.sendto(REQUEST, addr)
    data, _ = await asyncio.wait_for(proto.got.get(), 2)
    local = client.get_extra_info("sockname")
    assert stun.parse_binding_response(data) == (REQUEST[8:20], "127.0.0.1", local[1])
    assert len(data) == 32
    counters = server.get_protocol()
    assert (counters.requests, counters.responses, counters.dropped) == (1, 1, 0)
    client.close()
    server.close()


def _has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


async def test_ipv6_and_v4_mapped_on_a_dual_stack_socket():
    if not _has_ipv6():  # the IPv6 response itself is covered byte-exactly in tests/core/test_stun.py
        with pytest.raises(OSError):
            await start_stun("::1", 0)
        return
    server = await start_stun("::", 0)
    port = server.get_extra_info("sockname")[1]
    v6, p6 = await _client("::1")
    v6.sendto(REQUEST, ("::1", port))
    data, _ = await asyncio.wait_for(p6.got.get(), 2)
    assert stun.parse_binding_response(data)[1:] == ("::1", v6.get_extra_info("sockname")[1])
    assert len(data) == 44
    v4, p4 = await _client("127.0.0.1")
    v4.sendto(REQUEST, ("127.0.0.1", port))  # arrives as ::ffff:127.0.0.1, answered as family 1
    data, _ = await asyncio.wait_for(p4.got.get(), 2)
    assert stun.parse_binding_response(data)[1:] == ("127.0.0.1", v4.get_extra_info("sockname")[1])
    assert len(data) == 32
    for t in (v6, v4, server):
        t.close()


async def test_malformed_datagrams_are_ignored_and_counted():
    server = await start_stun("127.0.0.1", 0)
    addr = server.get_extra_info("sockname")
    client, proto = await _client("127.0.0.1")
    for junk in (b"x" * 100, REQUEST[:-1], b"\x01\x01" + REQUEST[2:], bytes(1500)):
        client.sendto(junk, addr)
    client.sendto(REQUEST, addr)  # still served afterwards
    data, _ = await asyncio.wait_for(proto.got.get(), 2)
    assert stun.parse_binding_response(data) is not None
    await asyncio.sleep(0.05)
    assert proto.got.empty()  # nothing came back for the junk
    counters = server.get_protocol()
    assert (counters.requests, counters.responses, counters.dropped) == (5, 1, 4)
    client.close()
    server.close()
