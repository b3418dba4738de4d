from __future__ import annotations

import ipaddress

import pytest

from app.core.policy.ipset import ALL, INTERNET, WILDCARD, AddrSet, addr_to_int, interval_of


def s(*texts: str) -> AddrSet:
    return AddrSet(interval_of(t) for t in texts)


def n(text: str) -> int:
    return addr_to_int(ipaddress.ip_address(text))


def test_spellings():
    assert s("100.64.0.1").strings() == ["100.64.0.1"]
    assert s("10.0.0.0/8").strings() == ["10.0.0.0/8"]
    assert s("10.0.0.1-10.0.0.5").strings() == ["10.0.0.1-10.0.0.5"]
    assert s("fd7a:115c:a1e0::/48").strings() == ["fd7a:115c:a1e0::/48"]
    assert s("0.0.0.0/0", "::/0").strings() == ["0.0.0.0/0", "::/0"]
    assert ALL.strings() == ["0.0.0.0/0", "::/0"]


def test_touching_addresses_stay_separate_overlapping_ones_merge():
    assert s("100.64.0.15", "100.64.0.16").strings() == ["100.64.0.15", "100.64.0.16"]
    assert s("10.0.0.0/8", "10.1.2.3").strings() == ["10.0.0.0/8"]
    assert s("100.64.0.15", "100.64.0.16") == s("100.64.0.15-100.64.0.16")   # same addresses


def test_membership_and_overlap():
    x = s("10.0.0.0/8", "fd7a:115c:a1e0::1")
    assert x.contains(n("10.2.3.4")) and not x.contains(n("11.0.0.1"))
    assert x.contains(n("fd7a:115c:a1e0::1")) and not x.contains(n("fd7a:115c:a1e0::2"))
    assert x.overlaps(*interval_of("10.33.0.0/16")) and not x.overlaps(*interval_of("192.168.0.0/16"))
    assert x.covers(*interval_of("10.33.0.0/16")) and not x.covers(*interval_of("0.0.0.0/0"))
    assert s("10.1.0.0/16").issubset(x) and not s("10.1.0.0/16", "1.1.1.1").issubset(x)


def test_families_do_not_mix():
    assert not s("0.0.0.0/0").contains(n("::1"))
    assert s("0.0.0.0/0", "::/0") == ALL


def test_wildcard_excludes_chromeos_range():
    assert WILDCARD.contains(n("100.64.0.1")) and WILDCARD.contains(n("fd7a:115c:a1e0::5"))
    assert not WILDCARD.contains(n("100.115.92.1"))


@pytest.mark.parametrize("inside", ["8.8.8.8", "2001:db8::1", "172.32.0.1"])
def test_internet_contains(inside):
    assert INTERNET.contains(n(inside))


@pytest.mark.parametrize("outside", ["10.1.1.1", "192.168.1.1", "172.16.5.5", "100.64.0.1", "169.254.1.1",
                                     "fd7a:115c:a1e0::1", "fe80::1", "fc00::1"])
def test_internet_excludes_private_space(outside):
    assert not INTERNET.contains(n(outside))


def test_minus_and_prefix_split():
    x = s("10.0.0.0/8").minus(s("10.128.0.0/9"))
    assert x.strings() == ["10.0.0.0/9"]
    assert [str(p) for p in s("10.0.0.1-10.0.0.6").prefixes()] == [
        "10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/31", "10.0.0.6/32"]
