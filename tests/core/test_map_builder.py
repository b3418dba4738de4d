import json
from datetime import UTC, datetime

import pytest

from app.core import derpmap
from app.core.map import builder
from app.core.map.wire import FrameReader, decompress, frame, frame_obj
from app.core.model import Node, User
from app.core.routes import elect_primaries, routes_for_peer, served_routes
from app.core.tailcfg import go_time, parse_go_time

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def node(i=1, **kw):
    base = {"id": i, "machine_key": "mkey:" + "1" * 64, "node_key": "nodekey:" + f"{i:064x}", "given_name": f"n{i}",
                "user_id": 1, "ipv4": f"100.64.0.{i}", "ipv6": f"fd7a:115c:a1e0::{i}", "created_at": NOW}
    base.update(kw)
    return Node(**base)


def test_framing_roundtrip_and_concatenated_frames():
    r = FrameReader()
    data = frame_obj({"a": 1}) + frame_obj({"KeepAlive": True})
    assert r.receive_data(data[:3]) == []
    assert r.receive_data(data[3:]) == [{"a": 1}, {"KeepAlive": True}]
    import zstandard

    two = zstandard.ZstdCompressor().compress(b'{"x":') + zstandard.ZstdCompressor().compress(b"[1,2]}")
    assert json.loads(decompress(two)) == {"x": [1, 2]}
    assert int.from_bytes(frame(b"{}")[:4], "little") == len(frame(b"{}")) - 4


def test_go_time_format():
    assert go_time(None) == "0001-01-01T00:00:00Z"
    assert go_time(NOW) == "2026-01-02T03:04:05Z"
    assert go_time(NOW.replace(microsecond=120000)) == "2026-01-02T03:04:05.12Z"
    assert parse_go_time("2026-01-02T03:04:05.123456789Z") == NOW.replace(microsecond=123456)
    assert parse_go_time("0001-01-01T00:00:00Z") is None


def test_self_and_peer_nodes():
    settings = builder.MapSettings(base_domain="ts.example", domain="hs.example")
    me = builder.tail_node(node(), settings, cap_map={}, now=NOW, capver=130)
    assert me["Name"] == "n1.ts.example."
    assert me["Addresses"] == ["100.64.0.1/32", "fd7a:115c:a1e0::1/128"]
    assert me["MachineAuthorized"] is True and me["KeyExpiry"] == "0001-01-01T00:00:00Z"
    assert builder.CAP_SSH in me["CapMap"] and me["CapMap"]["default-auto-update"] == [False]
    peer = builder.tail_node(node(2, tags=("tag:x",), user_id=None), settings, online=False, now=NOW,
                             routes=["10.0.0.0/8", "0.0.0.0/0"])
    assert "CapMap" not in peer and peer["User"] == builder.TAGGED_DEVICES_USER_ID and peer["Online"] is False
    assert peer["PrimaryRoutes"] == ["10.0.0.0/8"]
    assert peer["AllowedIPs"] == ["0.0.0.0/0", "10.0.0.0/8", "100.64.0.2/32", "fd7a:115c:a1e0::2/128"]
    expired = builder.tail_node(node(3, expiry=datetime(2020, 1, 1, tzinfo=UTC)), settings, now=NOW)
    assert expired["Expired"] is True and expired["MachineAuthorized"] is False


def test_assemble_embeds_peer_blobs():
    head = {"Node": {"ID": 1}}
    out = json.loads(builder.assemble(head, "Peers", [b'{"ID":2}', b'{"ID":3}']))
    assert out == {"Node": {"ID": 1}, "Peers": [{"ID": 2}, {"ID": 3}]}
    assert json.loads(builder.assemble(head, "Peers", [])) == head


def test_dns_config_like_headscale():
    d = builder.dns_config(magic_dns=True, base_domain="ts.example", override_local_dns=True,
                           global_nameservers=["1.1.1.1"], split={"corp": ["10.0.0.53"]},
                           search_domains=["corp"], extra_records=[{"name": "x.ts.example", "value": "100.64.0.9"}])
    assert d == {"Resolvers": [{"Addr": "1.1.1.1"}], "Routes": {"corp": [{"Addr": "10.0.0.53"}]},
                 "Domains": ["ts.example", "corp"], "Proxied": True,
                 "ExtraRecords": [{"Name": "x.ts.example", "Type": "A", "Value": "100.64.0.9"}]}
    d = builder.dns_config(magic_dns=False, base_domain="", override_local_dns=False, global_nameservers=["9.9.9.9"],
                           split={}, search_domains=[], extra_records=[])
    assert d == {"FallbackResolvers": [{"Addr": "9.9.9.9"}]}


def test_user_profiles():
    u = User(5, "alice", email="alice@example.com", display_name="Alice")
    assert builder.user_profile(u) == {"ID": 5, "LoginName": "alice@example.com", "DisplayName": "Alice"}
    assert builder.user_profile(None)["LoginName"] == "tagged-devices"


def test_derp_map_merge_and_embedded_region_wins():
    yaml_map = derpmap.normalise({"regions": {999: {"regionid": 999, "regioncode": "old", "nodes": [
        {"name": "999a", "hostname": "old.example", "stunport": 0}]}, 900: {"regioncode": "x", "nodes": []}}})
    assert yaml_map["Regions"]["999"]["Nodes"][0]["HostName"] == "old.example"
    emb = derpmap.embedded_region("https://hs.example.com", stun_port=3478)
    merged = derpmap.merge(yaml_map, emb)
    assert merged["Regions"]["999"]["RegionCode"] == "headscale"
    assert merged["Regions"]["999"]["Nodes"][0] == {"Name": "999", "RegionID": 999, "HostName": "hs.example.com",
                                                   "DERPPort": 443, "STUNPort": 3478}
    assert list(merged["Regions"]) == ["900", "999"]
    assert derpmap.embedded_region("http://10.0.0.1:8080")["Regions"]["999"]["Nodes"][0]["DERPPort"] == 8080
    with pytest.raises(derpmap.DERPMapError):
        derpmap.normalise({"regions": [1, 2]})


def test_routes_election():
    r = node(1, hostinfo={"RoutableIPs": ["10.0.0.0/8", "0.0.0.0/0", "::/0"]},
             approved_routes=("10.0.0.0/8", "0.0.0.0/0", "::/0"))
    r2 = node(2, hostinfo={"RoutableIPs": ["10.0.0.0/8"]}, approved_routes=("10.0.0.0/8",))
    unapproved = node(3, hostinfo={"RoutableIPs": ["192.168.0.0/16"]})
    served = {1: served_routes(r), 2: served_routes(r2), 3: served_routes(unapproved)}
    assert served[3] == []
    p = elect_primaries(served, {1, 2})
    assert p == {"10.0.0.0/8": 1}
    assert routes_for_peer(1, served[1], p) == ["0.0.0.0/0", "10.0.0.0/8", "::/0"]
    assert routes_for_peer(2, served[2], p) == []
    p2 = elect_primaries(served, {2}, p)         # 1 goes offline: 2 takes over
    assert p2 == {"10.0.0.0/8": 2}
    assert elect_primaries(served, {1, 2}, p2) == {"10.0.0.0/8": 2}   # and keeps it when 1 returns
