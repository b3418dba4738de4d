"""RegisterRequest checks and Go times from clients (app.core.tailcfg)."""

from datetime import UTC, datetime

import pytest

from app.core.tailcfg import RequestError, parse_go_time, parse_map_request, parse_register_request

KEY = "nodekey:" + "ab" * 32
OLD = "nodekey:" + "cd" * 32


def test_valid_register_request_is_typed():
    out = parse_register_request({
        "Version": 130, "NodeKey": KEY.upper().replace("NODEKEY", "nodekey"), "OldNodeKey": OLD,
        "Expiry": "2030-01-02T03:04:05Z", "Auth": {"AuthKey": "hskey-auth-x-y"}, "Followup": "",
        "Hostinfo": {"Hostname": "h", "NetInfo": "x"},
    })
    assert out["NodeKey"] == KEY and out["OldNodeKey"] == OLD
    assert out["Expiry"] == datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert out["Auth"]["AuthKey"] == "hskey-auth-x-y" and out["Hostinfo"] == {"Hostname": "h"}


def test_zero_and_absent_values_mean_none():
    out = parse_register_request({"NodeKey": KEY, "OldNodeKey": "nodekey:" + "0" * 64,
                                  "Expiry": "0001-01-01T00:00:00Z", "Auth": None, "Hostinfo": None})
    assert out["OldNodeKey"] is None and out["Expiry"] is None and out["Auth"] is None
    assert out["Hostinfo"] is None and out["Followup"] == ""


@pytest.mark.parametrize("body,message", [
    (None, "invalid JSON body"), ([1], "invalid JSON body"),
    ({"NodeKey": 5}, "invalid node key"), ({"NodeKey": "nodekey:zz"}, "invalid node key"),
    ({"NodeKey": KEY, "OldNodeKey": 5}, "invalid OldNodeKey"),
    ({"NodeKey": KEY, "OldNodeKey": "mkey:" + "1" * 64}, "invalid OldNodeKey"),
    ({"NodeKey": KEY, "Expiry": 5}, "invalid Expiry"),
    ({"NodeKey": KEY, "Expiry": ["2030-01-01T00:00:00Z"]}, "invalid Expiry"),
    ({"NodeKey": KEY, "Expiry": "9999-12-31T23:59:59-23:59"}, "invalid Expiry"),
    ({"NodeKey": KEY, "Expiry": "tomorrow"}, "invalid Expiry"),
    ({"NodeKey": KEY, "Auth": "hskey"}, "invalid Auth"), ({"NodeKey": KEY, "Auth": {"AuthKey": 5}}, "invalid Auth"),
    ({"NodeKey": KEY, "Followup": 5}, "invalid Followup"),
    ({"NodeKey": KEY, "Auth": {"AuthKey": "hskey-auth-\x00"}}, "invalid Auth"),
    ({"NodeKey": KEY, "Followup": "https://x/register/\x00"}, "invalid Followup"),
    ({"NodeKey": KEY, "Hostinfo": "x"}, "invalid Hostinfo"),
])
def test_wrong_types_are_request_errors(body, message):
    with pytest.raises(RequestError, match=message):
        parse_register_request(body)


@pytest.mark.parametrize("text", ["9999-12-31T23:59:59-23:59", "2030-13-01T00:00:00Z", 5, ["x"], {}])
def test_go_time_errors_are_value_errors(text):
    with pytest.raises(ValueError):
        parse_go_time(text)


def test_go_time_edges():
    assert parse_go_time(None) is None and parse_go_time("") is None
    assert parse_go_time("9999-12-31T23:59:59+01:00").year == 9999
    assert parse_go_time("2030-01-01T00:00:00.123456789Z").microsecond == 123456


def test_map_request_hostinfo_and_endpoints_are_normalised():
    dropped: list[str] = []
    out = parse_map_request({"Version": 130, "NodeKey": KEY, "Endpoints": ["192.0.2.1:1", "garbage"],
                             "Hostinfo": {"Hostname": "h", "NetInfo": {"PreferredDERP": "abc"},
                                          "RoutableIPs": [{"a": 1}]}}, dropped)
    assert out["Endpoints"] == ["192.0.2.1:1"]
    assert out["Hostinfo"] == {"Hostname": "h", "NetInfo": {}, "RoutableIPs": []}
    assert set(dropped) == {"Endpoints[1]", "NetInfo.PreferredDERP", "RoutableIPs[0]"}
