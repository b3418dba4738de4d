"""Per-source connection counting (app/server/limits.py), without sockets."""

from __future__ import annotations

from app.server import clientaddr
from app.server.edge import RequestHead
from app.server.limits import Admission, source_key


def _head(**headers) -> RequestHead:
    return RequestHead("GET", "/", "", "HTTP/1.1", {k.replace("_", "-"): v for k, v in headers.items()})


def test_sources_are_addresses_and_ipv6_counts_by_64():
    assert source_key(("192.0.2.7", 5000)) == "192.0.2.7"
    assert source_key(("2001:db8:1:2::1", 1, 0, 0)) == source_key(("2001:db8:1:2:ffff::9", 1, 0, 0))
    assert source_key(("2001:db8:1:2::1", 1, 0, 0)) != source_key(("2001:db8:1:3::1", 1, 0, 0))
    assert source_key(("::ffff:192.0.2.7", 1, 0, 0)) == "192.0.2.7"
    assert source_key("") == source_key("/run/headscale.sock") == "local"


def test_per_source_and_total_limits():
    a = Admission(2, total=5)
    keys = [a.admit(("192.0.2.1", p)) for p in range(3)]
    assert keys[:2] == ["192.0.2.1", "192.0.2.1"] and keys[2] is None
    assert all(a.admit((f"192.0.2.{n}", 1)) for n in (9, 10, 11))     # 5 open: the total
    assert a.admit(("192.0.2.12", 1)) is None
    assert a.admit("") is None            # the total holds for the local socket too
    a.release("192.0.2.1")
    assert a.admit(("192.0.2.1", 9)) == "192.0.2.1"
    assert Admission(0, total=100).admit(("192.0.2.1", 1)) == "192.0.2.1"


def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_share():
    clientaddr.configure(["10.0.0.0/8"])
    try:
        a = Admission(2, total=100)
        proxy = ("10.1.1.1", 4000)
        keys = [a.admit(proxy) for _ in range(5)]         # the proxy itself is not limited
        assert all(k == "10.1.1.1" for k in keys)
        moved = [a.rekey(k, proxy, _head(x_forwarded_for="198.51.100.4")) for k in keys[:3]]
        assert moved == ["198.51.100.4", "198.51.100.4", None]   # that client's share is 2
        assert a.rekey(keys[3], proxy, _head(x_forwarded_for="198.51.100.5")) == "198.51.100.5"
        # From an untrusted peer the header changes nothing.
        k = a.admit(("192.0.2.1", 1))
        assert a.rekey(k, ("192.0.2.1", 1), _head(x_forwarded_for="198.51.100.6")) == "192.0.2.1"
    finally:
        clientaddr.configure([])
