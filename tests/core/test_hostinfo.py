"""Hostinfo and Endpoints from clients become values every peer can decode."""

import pytest

from app.core.hostinfo import (
    normalise_endpoints,
    normalise_hostinfo,
    only_unknown,
    summary,
    valid_endpoint,
    valid_prefix,
)
from app.core.model import Node


def norm(value):
    dropped: list[str] = []
    return normalise_hostinfo(value, dropped), dropped


@pytest.mark.parametrize("netinfo,kept", [
    ("x", None), (5, None), ([1], None),
    ({"PreferredDERP": "abc"}, {}), ({"PreferredDERP": [1]}, {}), ({"PreferredDERP": 1.5}, {}),
    ({"PreferredDERP": True}, {}), ({"PreferredDERP": 1 << 70}, {}),
    ({"PreferredDERP": 3, "DERPLatency": {"3-v4": 0.02, "x": "slow"}, "WorkingUDP": "yes"},
     {"PreferredDERP": 3, "DERPLatency": {"3-v4": 0.02}}),
])
def test_netinfo_of_the_wrong_type_is_dropped(netinfo, kept):
    out, dropped = norm({"Hostname": "h", "NetInfo": netinfo})
    assert out.get("NetInfo") == kept
    assert out["Hostname"] == "h" and dropped and not only_unknown(dropped)
    assert Node(id=1, machine_key="", node_key="", hostinfo=out).home_derp == (kept or {}).get("PreferredDERP", 0)


def test_every_list_field_keeps_only_usable_entries():
    out, dropped = norm({
        "RoutableIPs": [{"a": 1}, "10.0.0.0/8", "10.0.0.1", "10.0.0.0/255.0.0.0", "::/0", "1.2.3.4/33", 7],
        "RequestTags": ["tag:a", 5, None], "sshHostKeys": "ssh-ed25519 AAA",
        "Services": [{"Proto": "tcp", "Port": 22}, {"Proto": "tcp", "Port": 70000}, "svc", {"Port": -1}],
        "WoLMACs": [["x"]],
    })
    assert out["RoutableIPs"] == ["10.0.0.0/8", "::/0"]
    assert out["RequestTags"] == ["tag:a"]
    assert "sshHostKeys" not in out
    assert out["Services"] == [{"Proto": "tcp", "Port": 22}, {"Proto": "tcp"}, {}]
    assert out["WoLMACs"] == []
    assert "RoutableIPs[0]" in dropped and "Services[2]" in dropped and "sshHostKeys" in dropped


def test_scalars_names_and_nulls():
    out, dropped = norm({"hostname": "lower", "OS": 5, "ShieldsUp": "true", "Userspace": None,
                         "Location": {"City": "X", "Latitude": "north", "Priority": 2},
                         "TPM": {"FirmwareVersion": -1, "Vendor": "v"}, "Brand-new": {"x": 1}})
    # Go matches field names case-insensitively; the output uses tailcfg's spelling.
    assert out == {"Hostname": "lower", "Location": {"City": "X", "Priority": 2}, "TPM": {"Vendor": "v"}}
    assert "OS" in dropped and "ShieldsUp" in dropped and "Location.Latitude" in dropped
    assert any(d.startswith("Brand-new") for d in dropped)


def test_only_unknown_fields_are_not_an_error():
    out, dropped = norm({"Hostname": "a", "FutureField": 1})
    assert out == {"Hostname": "a"} and only_unknown(dropped)


@pytest.mark.parametrize("value", ["x", 5, [], True])
def test_a_hostinfo_that_is_not_an_object_is_dropped_whole(value):
    assert norm(value) == (None, ["Hostinfo"])
    assert norm(None) == (None, [])


def test_endpoints():
    dropped: list[str] = []
    eps = ["192.0.2.1:41641", "[2001:db8::1]:3478", "[fe80::1%eth0]:1", "x", 5, "1.2.3.4:99999",
           "[1.2.3.4]:5", "2001:db8::1:80", "1.2.3.4", "1.2.3.4:", "1.2.3.4:+1", "1.2.3.4:²"]
    assert normalise_endpoints(eps, dropped) == ["192.0.2.1:41641", "[2001:db8::1]:3478", "[fe80::1%eth0]:1"]
    assert len(dropped) == len(eps) - 3
    assert normalise_endpoints("1.2.3.4:5", dropped) == []
    assert valid_endpoint("0.0.0.0:0") and not valid_endpoint(None)


def test_prefixes():
    assert valid_prefix("10.0.0.0/8") and valid_prefix("10.1.2.3/8") and valid_prefix("::/0")
    for bad in ("10.0.0.0", "10.0.0.0/8/8", "10.0.0.0/ 8", "10.0.0.0/²", "fe80::1%eth0/64", "x/1", "::/129", 5):
        assert not valid_prefix(bad), bad


def test_summary_is_bounded_and_escaped():
    text = summary([f"f{i}\n" for i in range(20)])
    assert "\n" not in text and text.endswith("(+12 more)")


def test_model_properties_stay_total_for_records_built_otherwise():
    for hi in ({"NetInfo": "x"}, {"NetInfo": {"PreferredDERP": "abc"}}, {"NetInfo": {"PreferredDERP": [1]}},
               {"RoutableIPs": "10.0.0.0/8"}, {"RoutableIPs": [{"a": 1}, "10.0.0.0/8"]}):
        n = Node(id=1, machine_key="", node_key="", hostinfo=hi)
        assert n.home_derp == 0
        assert n.routable_ips in ((), ("10.0.0.0/8",))


def test_strings_with_nul_are_dropped():
    out, dropped = norm({"Hostname": "a\x00b", "OS": "linux", "RequestTags": ["tag:a", "tag:\x00"]})
    assert out == {"OS": "linux", "RequestTags": ["tag:a"]}
    assert "Hostname" in dropped and "RequestTags[1]" in dropped
