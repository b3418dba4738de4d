import ipaddress
import random

import pytest

from app.core.ipam import AddressesExhausted, Allocator
from app.core.names import fqdn, is_auto_derived, sanitize_hostname, unique_label, valid_label


def test_sequential_skips_network_and_reserved_and_never_reuses():
    a = Allocator("100.64.0.0/10")
    first = [a.allocate() for _ in range(3)]
    assert first == ["100.64.0.1", "100.64.0.2", "100.64.0.3"]
    a.mark_used(["100.64.0.5"])
    assert [a.allocate() for _ in range(2)] == ["100.64.0.4", "100.64.0.6"]


def test_reserved_addresses_are_never_handed_out():
    a = Allocator("100.100.100.96/29")
    got = {a.allocate() for _ in range(5)}
    assert "100.100.100.100" not in got and "100.100.100.96" not in got and "100.100.100.103" not in got
    with pytest.raises(AddressesExhausted):
        a.allocate()
    b = Allocator("100.115.92.0/22")
    for _ in range(20):
        assert ipaddress.ip_address(b.allocate()) not in ipaddress.ip_network("100.115.92.0/23")


def test_random_allocation_stays_inside_prefix_and_unique():
    a = Allocator("fd7a:115c:a1e0::/120", "random", rng=random.Random(1))
    net = ipaddress.ip_network("fd7a:115c:a1e0::/120")
    got = [a.allocate() for _ in range(200)]
    assert len(set(got)) == 200
    assert all(ipaddress.ip_address(x) in net for x in got)
    assert "fd7a:115c:a1e0::53" not in got


def test_release_makes_an_address_free_again():
    a = Allocator("100.64.0.0/30")
    x = a.allocate()
    a.allocate()
    with pytest.raises(AddressesExhausted):
        a.allocate()
    a.release(x)
    assert a.allocate() == x


@pytest.mark.parametrize("raw,want", [
    ("MyLaptop", "mylaptop"), ("my laptop", "my-laptop"), ("host.local", "host"), ("a_b@c", "a-b-c"),
    ("--x--", "x"), ("über", "ber"), ("x" * 80, "x" * 63), ("", ""), ("box.lan", "box"),
])
def test_sanitize_hostname(raw, want):
    assert sanitize_hostname(raw) == want


def test_unique_label_and_auto_derived():
    assert unique_label("web", []) == "web"
    assert unique_label("web", ["web", "web-1"]) == "web-2"
    assert unique_label("", []) == "node"
    assert is_auto_derived("web-3", "Web") and is_auto_derived("web", "web.local")
    assert not is_auto_derived("renamed", "web")
    assert valid_label("a-b1") and not valid_label("-a") and not valid_label("A")
    assert fqdn("web", "tailnet.example") == "web.tailnet.example."
