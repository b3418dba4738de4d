import pytest

from app.core.tailcfg import RequestError, parse_map_request

KEY = "nodekey:" + "AB" * 32


def test_valid_request_is_normalised():
    out = parse_map_request({"Version": 130, "NodeKey": KEY, "DiscoKey": "discokey:" + "0c" * 32,
                             "Endpoints": ["192.0.2.1:41641"], "Hostinfo": {"Hostname": "x"}, "Stream": True})
    assert out["NodeKey"] == KEY.lower() and out["Endpoints"] == ["192.0.2.1:41641"]


def test_absent_fields_mean_zero():
    assert parse_map_request({"Version": 131, "NodeKey": KEY})["NodeKey"] == KEY.lower()


@pytest.mark.parametrize("body,message", [
    (None, "invalid JSON body"), ([], "invalid JSON body"),
    ({"NodeKey": KEY}, "unsupported client version"), ({"Version": "130", "NodeKey": KEY}, "unsupported client version"),
    ({"Version": True, "NodeKey": KEY}, "unsupported client version"), ({"Version": 112, "NodeKey": KEY}, "unsupported client version"),
    ({"Version": 130, "NodeKey": ""}, "invalid node key"), ({"Version": 130, "NodeKey": "mkey:" + "0" * 64}, "invalid node key"),
    ({"Version": 130, "NodeKey": KEY, "DiscoKey": 5}, "invalid DiscoKey"),
    ({"Version": 130, "NodeKey": KEY, "Endpoints": "1.2.3.4:5"}, "invalid Endpoints"),
    ({"Version": 130, "NodeKey": KEY, "Endpoints": [1]}, "invalid Endpoints"),
    ({"Version": 130, "NodeKey": KEY, "Hostinfo": []}, "invalid Hostinfo"),
    ({"Version": 130, "NodeKey": KEY, "Stream": "yes"}, "invalid Stream"),
])
def test_bad_requests_name_the_problem(body, message):
    with pytest.raises(RequestError, match=message):
        parse_map_request(body)
