"""PacketFilters in deltas are spliced from pieces encoded once per flush; the bytes must be
the JSON of the filter itself."""

from __future__ import annotations

import json

from app.core.map.wire import encode_json
from app.service.deltas import Flush


def test_filter_json_from_shared_pieces_equals_plain_encoding():
    src = ["100.64.0.1", "fd7a:115c:a1e0::1", "10.0.0.0/8"]
    rules = [
        {"SrcIPs": src, "DstPorts": [{"IP": "100.64.0.2", "Ports": {"First": 22, "Last": 22}}]},
        {"SrcIPs": src, "DstPorts": [{"IP": "*", "Ports": {"First": 0, "Last": 65535}}], "IPProto": [6, 17]},
        {"SrcIPs": ["*"], "CapGrant": [{"Dsts": ["100.64.0.2/32"], "CapMap": {"example.com/cap/x": [{"ü": 1}]}}]},
        {"SrcIPs": []},
        {"DstPorts": []},
    ]
    f = Flush.__new__(Flush)       # only the encoding memo is exercised
    f._json, f._filter_jsons = {}, {}
    got = f._filter_json(rules)
    assert got == encode_json(rules)
    assert json.loads(got) == rules
    assert f._filter_json(rules) is got                       # once per filter per flush
    assert f._filter_json([rules[1], rules[0]]) == encode_json([rules[1], rules[0]])
