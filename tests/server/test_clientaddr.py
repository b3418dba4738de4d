"""trusted_proxies: whose X-Forwarded-For / X-Real-IP / True-Client-IP is believed."""

from __future__ import annotations

import pytest

from app.server import clientaddr


@pytest.fixture(autouse=True)
def _trusted():
    clientaddr.configure(["10.0.0.0/8", "fd00::/8"])
    yield
    clientaddr.configure([])


@pytest.mark.parametrize(("peer", "headers", "expected"), [
    # untrusted peers: headers ignored, whatever they say
    ("192.0.2.9", {"x-forwarded-for": "203.0.113.5"}, "192.0.2.9"),
    ("192.0.2.9", {"x-real-ip": "203.0.113.5", "true-client-ip": "1.1.1.1"}, "192.0.2.9"),
    # a trusted proxy: the rightmost hop that is not a trusted proxy
    ("10.0.0.2", {"x-forwarded-for": "203.0.113.5"}, "203.0.113.5"),
    ("10.0.0.2", {"x-forwarded-for": "6.6.6.6, 203.0.113.5"}, "203.0.113.5"),   # forged left entry
    ("10.0.0.2", {"x-forwarded-for": "203.0.113.5, 10.1.1.1"}, "203.0.113.5"),  # two proxies
    ("10.0.0.2", {"x-forwarded-for": "10.9.9.9, 10.1.1.1"}, "10.9.9.9"),        # all trusted
    ("10.0.0.2", {"x-forwarded-for": "garbage, 203.0.113.5"}, "203.0.113.5"),
    ("10.0.0.2", {"x-forwarded-for": "203.0.113.5, garbage"}, "10.0.0.2"),      # nothing left of junk
    ("10.0.0.2", {"x-forwarded-for": "[2001:db8::1]:443"}, "2001:db8::1"),
    ("10.0.0.2", {"x-real-ip": "198.51.100.1"}, "198.51.100.1"),
    ("10.0.0.2", {"true-client-ip": "198.51.100.2"}, "198.51.100.2"),
    ("10.0.0.2", {"x-real-ip": "not-an-ip"}, "10.0.0.2"),
    ("10.0.0.2", {}, "10.0.0.2"),
    ("::ffff:10.0.0.2", {"x-real-ip": "198.51.100.1"}, "198.51.100.1"),          # v4-mapped peer
    ("fd00::1", {"x-forwarded-for": "2001:db8::7"}, "2001:db8::7"),
])
def test_client_address(peer, headers, expected):
    assert clientaddr.client_address(peer, headers) == expected


def test_no_trusted_proxies_ignores_every_header():
    clientaddr.configure([])
    assert clientaddr.client_address("10.0.0.2", {"x-forwarded-for": "203.0.113.5"}) == "10.0.0.2"


def test_peer_address_for_streams():
    assert clientaddr.peer_address(("10.0.0.2", 5555), {"x-real-ip": "198.51.100.1"}) == "198.51.100.1"
    assert clientaddr.peer_address("/run/headscale.sock") == "local"
    assert clientaddr.peer_address(None) == "local"
