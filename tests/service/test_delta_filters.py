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


def test_removed_ids_cut_from_the_shared_json():
    f = Flush.__new__(Flush)
    f._sorted, f._ids_json, f._minus, f._json = {}, {}, {}, {}
    for ids in ([5], [3, 17], [1, 22, 333, 4444, 55555], list(range(0, 3000, 7))):
        shared = f.sorted_ids(frozenset(ids))
        assert f._removed_json(shared) == encode_json(ids)
        for drop in ids[:3] + ids[-3:]:
            mine = shared.copy()
            mine.remove(drop)
            f._minus[id(mine)] = (mine, shared, drop)
            assert f._removed_json(mine) == encode_json(mine), (ids, drop)
    assert f._removed_json([9, 8]) == b"[9,8]"                 # a list of its own
