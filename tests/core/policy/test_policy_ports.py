from __future__ import annotations

import pytest

from app.core.policy.ports import (
    PortError,
    format_go_duration,
    parse_go_duration,
    parse_ports,
    parse_protocol,
    protocol_numbers,
    split_dst,
)


@pytest.mark.parametrize("text,want", [
    ("*", ((0, 65535),)),
    ("22", ((22, 22),)),
    ("80,443", ((80, 80), (443, 443))),
    ("8000-8100", ((8000, 8100),)),
    ("0-10", ((0, 10),)),           # a range may start at 0, a single port may not
    ("22,1000-2000,65535", ((22, 22), (1000, 2000), (65535, 65535))),
    ("022", ((22, 22),)),           # Go's Atoi accepts leading zeros
])
def test_ports(text, want):
    assert parse_ports(text) == want


@pytest.mark.parametrize("text,message", [
    ("ssh", "invalid first integer"),
    ("0", "first port must be >0"),
    ("65536", "port number out of range"),
    ("-1", "invalid port range format"),       # "-" makes it a range, as in headscale
    ("10-5", "first port is greater than last port"),
    ("1-2-3", "invalid port range format"),
    ("80,", "invalid first integer"),
    (" 80", "invalid first integer"),
    ("1_000", "invalid first integer"),
])
def test_bad_ports(text, message):
    with pytest.raises(PortError, match=message):
        parse_ports(text)


@pytest.mark.parametrize("text,want", [
    ("tag:server:22", ("tag:server", "22")),
    ("alice@example.com:*", ("alice@example.com", "*")),
    ("10.0.0.0/8:80,443", ("10.0.0.0/8", "80,443")),
    ("fd7a:115c:a1e0::1:22", ("fd7a:115c:a1e0::1", "22")),
    ("[fd7a:115c:a1e0::1]:22", ("fd7a:115c:a1e0::1", "22")),
    ("[fd7a:115c:a1e0::1]/128:80", ("fd7a:115c:a1e0::1/128", "80")),
])
def test_split_dst(text, want):
    assert split_dst(text) == want


@pytest.mark.parametrize("text", [":22", "host:", "[10.0.0.1]:22", "[fd7a::1]22", "nocolon"])
def test_split_dst_errors(text):
    with pytest.raises(PortError):
        split_dst(text)


@pytest.mark.parametrize("text,canonical,numbers", [
    ("", "", ()),
    ("tcp", "tcp", (6,)),
    ("TCP", "tcp", (6,)),
    ("6", "tcp", (6,)),
    ("udp", "udp", (17,)),
    ("icmp", "icmp", (1,)),                 # ICMPv4 only
    ("ipv6-icmp", "ipv6-icmp", (58,)),
    ("58", "ipv6-icmp", (58,)),
    ("ip-in-ip", "ip-in-ip", (4,)),
    ("sctp", "sctp", (132,)),
    ("fc", "fc", (133,)),
    ("99", "99", (99,)),                    # any number 1-255
])
def test_acl_protocols(text, canonical, numbers):
    assert parse_protocol(text) == canonical
    assert protocol_numbers(canonical) == numbers


def test_grant_protocols_are_verbatim():
    assert parse_protocol("6", canonical=False) == "6"
    assert protocol_numbers("6") == (6,)
    with pytest.raises(PortError):
        parse_protocol("TCP", canonical=False)


@pytest.mark.parametrize("text,message", [
    ("*", 'proto name "*" not known'),
    ("0", "leading 0 not permitted"),
    ("017", "leading 0 not permitted"),
    ("256", "protocol number out of range (0-255): 256"),
    ("http", "invalid protocol number"),
])
def test_bad_protocols(text, message):
    with pytest.raises(PortError, match=message.replace("(", r"\(").replace(")", r"\)").replace("*", r"\*")):
        parse_protocol(text)


@pytest.mark.parametrize("text,ns,shown", [
    ("12h", 12 * 3600 * 10**9, "12h0m0s"),
    ("168h", 168 * 3600 * 10**9, "168h0m0s"),
    ("168h0m1s", (168 * 3600 + 1) * 10**9, "168h0m1s"),
    ("-1m", -60 * 10**9, "-1m0s"),
    ("1h30m", 5400 * 10**9, "1h30m0s"),
    ("90s", 90 * 10**9, "1m30s"),
    ("1.5h", 5400 * 10**9, "1h30m0s"),
    ("0", 0, "0s"),
    ("500ms", 5 * 10**8, "500ms"),
])
def test_go_durations(text, ns, shown):
    assert parse_go_duration(text) == ns
    assert format_go_duration(ns) == shown


@pytest.mark.parametrize("text", ["abc", "", "1", "h", "1d", "1h-"])
def test_bad_durations(text):
    with pytest.raises(ValueError, match="time: "):
        parse_go_duration(text)
