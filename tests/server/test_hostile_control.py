"""Hostile or broken input on the control protocol (issue 11, section 2).

One node's bad data must never break another node's map; bad requests get a clean refusal
and leave the connection usable.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sqlite3

import pytest

from app.client.control import StreamState
from app.config import dev_config
from app.server.serve import build, start, stop
from tests.server.conftest import Stream, new_client, user_and_key

BAD_HOSTINFOS = [
    {"NetInfo": "x"}, {"NetInfo": 5}, {"NetInfo": {"PreferredDERP": "abc"}}, {"NetInfo": {"PreferredDERP": [1]}},
    {"RoutableIPs": [{"a": 1}]}, {"RoutableIPs": ["not-a-prefix", 5]}, {"Services": [{"Port": "x"}, 7]},
    {"RequestTags": [{"t": 1}]}, {"OS": 5, "ShieldsUp": "yes", "Location": "x", "sshHostKeys": [None]},
]


async def raw_request(client, method: str, path: str | bytes, body: bytes = b"") -> tuple[int, bytes]:
    """A request with a raw body (sent in frames of at most 16 KiB) and a raw :path."""
    conn = client.conn
    sid = conn.get_next_available_stream_id()
    st = client.streams[sid] = StreamState()
    conn.send_headers(sid, [(b":method", method.encode()), (b":path", path if isinstance(path, bytes) else path.encode()),
                            (b":scheme", b"https"), (b":authority", b"x"), (b"content-type", b"application/json")],
                      end_stream=not body)
    for i in range(0, len(body), 16384):
        conn.send_data(sid, body[i:i + 16384], end_stream=i + 16384 >= len(body))
    client._flush()
    await client.writer.drain()
    await asyncio.wait_for(st.headers_ready.wait(), 10)
    chunks = []
    while (c := await asyncio.wait_for(st.data.get(), 10)) is not None:
        chunks.append(c)
    client.streams.pop(sid, None)
    return st.status or 0, b"".join(chunks)


async def first_map(client) -> dict:
    stream = client.map_stream()
    try:
        return await asyncio.wait_for(anext(stream), 10)
    finally:
        await stream.aclose()


async def api_get(services, path: str) -> tuple[int, dict]:
    _, full = await services.state.create_api_key(None)
    host, port = services.addresses["listen"]
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {full}\r\nConnection: close\r\n\r\n".encode())
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    if b"chunked" in head.lower():
        out, rest = b"", body
        while rest:
            size, _, rest = rest.partition(b"\r\n")
            n = int(size, 16)
            if n == 0:
                break
            out, rest = out + rest[:n], rest[n + 2:]
        body = out
    return int(head.split(b" ")[1]), json.loads(body)


async def test_bad_hostinfo_is_dropped_and_every_map_still_builds(server, caplog):
    _, key = await user_and_key(server)
    a = await new_client(server)
    assert (await a.register(key, hostinfo={"Hostname": "good"}))["MachineAuthorized"]
    sa = Stream(a, Hostinfo={"Hostname": "good", "NetInfo": {"PreferredDERP": 1}})
    await sa.wait(lambda m: "Node" in m)
    bad_ids = []
    for i, hi in enumerate(BAD_HOSTINFOS):
        c = await new_client(server)
        resp = await c.register(key, hostinfo={"Hostname": f"bad{i}", **hi})
        assert resp.get("MachineAuthorized") is True, resp
        # Its own map works, with the unusable parts gone.
        status, _ = await c.request("POST", "/machine/map", c.map_request(
            Stream=False, OmitPeers=True, Hostinfo={"Hostname": f"bad{i}", **hi}, Endpoints=["garbage", "192.0.2.9:1"]))
        assert status == 200
        own = await first_map(c)
        assert own["Node"]["HomeDERP"] == 0 and own["Node"]["Endpoints"] == ["192.0.2.9:1"]
        assert own["Node"]["Hostinfo"]["Hostname"] == f"bad{i}"
        bad_ids.append(own["Node"]["ID"])
        stored = server.state.nodes[own["Node"]["ID"]].hostinfo
        assert json.dumps(stored)  # plain JSON, typed like tailcfg
        for field in ("NetInfo", "Services", "RoutableIPs", "RequestTags"):
            assert field not in hi or field not in stored or isinstance(stored[field], (dict, list))
        await c.close()
    # One log line per request that carried something unusable (register + map request each).
    assert caplog.text.count("dropped unusable fields") == 2 * len(BAD_HOSTINFOS)
    assert "Traceback" not in caplog.text
    # The good node's stream survived every one of them and learnt about each.
    await sa.wait(lambda m: any(p["ID"] == bad_ids[-1] for p in m.get("PeersChanged", [])))
    assert not sa.task.done()
    # A newcomer's full map lists every peer.
    n = await new_client(server)
    await n.register(key, hostinfo={"Hostname": "new"})
    first = await first_map(n)
    assert {p["ID"] for p in first["Peers"]} >= set(bad_ids)
    assert all(p["HomeDERP"] == 0 for p in first["Peers"] if p["ID"] in bad_ids)
    status, body = await api_get(server, "/api/v1/node")
    assert status == 200 and len(body["nodes"]) == len(bad_ids) + 2
    await sa.close()
    for c in (a, n):
        await c.close()


async def test_bad_rows_stored_by_older_versions_break_no_map_after_restart(tmp_path):
    cfg = dev_config(str(tmp_path), overrides={"listen_addr": "127.0.0.1:0", "metrics_listen_addr": "",
                                                "tuning.batch_change_delay": "20ms"})
    services = await build(cfg)
    await start(services)
    try:
        _, key = await user_and_key(services)
        ids = []
        for i in range(4):
            c = await new_client(services)
            await c.register(key, hostinfo={"Hostname": f"n{i}"})
            ids.append(next(n.id for n in services.state.nodes.values() if n.node_key == c.node_key))
            await c.close()
        db_path = services.cfg.database.sqlite.path
    finally:
        await stop(services)
    db = sqlite3.connect(db_path)
    with db:
        db.execute("UPDATE nodes SET host_info = ?, endpoints = ?, approved_routes = ? WHERE id = ?",
                   ('{"Hostname":5,"NetInfo":"x","RoutableIPs":[{"a":1}],"Services":7}', '["x",5,"192.0.2.1:1"]',
                    '["nope",3,"10.0.0.0/8"]', ids[0]))
        db.execute("UPDATE nodes SET host_info = ? WHERE id = ?", ("[" * 100_000, ids[1]))
        db.execute("UPDATE nodes SET host_info = ? WHERE id = ?",
                   ('{"NetInfo":{"PreferredDERP":[1]},"RoutableIPs":"10.0.0.0/8"}', ids[2]))
        db.execute("UPDATE nodes SET ipv4 = 'garbage', ipv6 = '100.64.9.9' WHERE id = ?", (ids[3],))
    db.close()
    services = await build(cfg)
    await start(services)
    try:
        _, key = await user_and_key(services, "bob")
        c = await new_client(services)
        await c.register(key, hostinfo={"Hostname": "fresh"})
        first = await first_map(c)
        peers = {p["ID"]: p for p in first["Peers"]}
        assert set(peers) == set(ids)
        assert all("garbage" not in a and not a.startswith("100.64.9.9") for a in peers[ids[3]]["Addresses"])
        assert peers[ids[0]]["Endpoints"] == ["192.0.2.1:1"] and peers[ids[0]]["HomeDERP"] == 0
        assert services.state.nodes[ids[0]].approved_routes == ("10.0.0.0/8",)
        status, body = await api_get(services, "/api/v1/node")
        assert status == 200 and {int(n["id"]) for n in body["nodes"]} >= set(ids)
        await c.close()
    finally:
        await stop(services)


@pytest.mark.parametrize("path,body", [
    ("/machine/register", b'{"Version":130,"NodeKey":"%s","Hostinfo":{"Hostname":"\\ud800"}}'),
    ("/machine/map", b'{"Version":130,"NodeKey":"%s","Endpoints":["\\ud800"]}'),
    ("/machine/map", b'{"Version":130,"NodeKey":"%s","Hostinfo":{"Hostname":"\xed\xa0\x80"}}'),
    ("/machine/register", b'{"Version":130,"NodeKey":"%s","Hostinfo":' + b"[" * 15_000 + b"]" * 15_000 + b"}"),
    ("/machine/map", b'{"Version":130,"NodeKey":"%s","Hostinfo":' + b"[" * 15_000 + b"]" * 15_000 + b"}"),
    ("/machine/map", b'{"Version":130,"NodeKey":"%s","Hostinfo":{"X":NaN}}'),
])
async def test_invalid_text_and_deep_nesting_are_refused_cleanly(server, path, body):
    _, key = await user_and_key(server)
    c = await new_client(server)
    await c.register(key, hostinfo={"Hostname": "n"})
    before = {n.id: n.hostinfo for n in server.state.nodes.values()}
    status, answer = await raw_request(c, "POST", path, body.replace(b"%s", c.node_key.encode()))
    assert status == 400, answer
    assert {n.id: n.hostinfo for n in server.state.nodes.values()} == before
    # The connection is still usable.
    assert await c.lite_update(Hostinfo={"Hostname": "still-fine"}) == 200
    await c.close()


@pytest.mark.parametrize("extra,message", [
    ({"Expiry": 5}, "invalid Expiry"), ({"OldNodeKey": 5}, "invalid OldNodeKey"),
    ({"Expiry": "9999-12-31T23:59:59-23:59"}, "invalid Expiry"), ({"Auth": {"AuthKey": [1]}}, "invalid Auth"),
    ({"Followup": {"x": 1}}, "invalid Followup"),
])
async def test_register_request_fields_of_the_wrong_type_get_an_error(server, extra, message):
    _, key = await user_and_key(server)
    c = await new_client(server)
    resp = await c.register(key, **extra)
    assert message in resp["Error"] and not server.state.nodes
    assert (await c.register(key))["MachineAuthorized"] is True
    await c.close()


async def test_a_path_that_is_not_utf8_is_refused_on_its_stream_only(server, caplog):
    _, key = await user_and_key(server)
    c = await new_client(server)
    status, _ = await raw_request(c, "POST", b"/machine/\xff\xfe", b"{}")
    assert status == 400
    status, _ = await raw_request(c, "GET", b"/machine/ssh/action/\xc2\xb2/to/1", b"")
    assert status == 400
    status, _ = await raw_request(c, "GET", "/machine/ssh/action/²/to/1", b"")
    assert status == 400
    assert (await c.register(key))["MachineAuthorized"] is True
    assert "Traceback" not in caplog.text and "UnicodeDecodeError" not in caplog.text
    await c.close()


async def test_a_peer_whose_entry_cannot_be_built_is_left_out_of_other_maps(server, caplog):
    """Defence in depth: even a record that got past every check costs only its own entry."""
    _, key = await user_and_key(server)
    clients, streams, ids = [], [], []
    for name in ("a", "b", "c"):
        c = await new_client(server)
        await c.register(key, hostinfo={"Hostname": name})
        s = Stream(c)
        ids.append((await s.wait(lambda m: "Node" in m))["Node"]["ID"])
        clients.append(c)
        streams.append(s)
    st = server.state
    # b's record is broken in memory only (an address that does not parse).
    st.nodes[ids[1]] = dataclasses.replace(st.nodes[ids[1]], ipv4="garbage")
    server.mapper.forget(ids[1])
    await st.rename_node(ids[2], "sea")
    # a still gets c's change: the batch was not lost to b's broken entry.
    await streams[0].wait(lambda m: any(p["ID"] == ids[2] and p["Name"].startswith("sea.")
                                        for p in m.get("PeersChanged", [])))
    # A newcomer's full map has a and c, without b.
    n = await new_client(server)
    await n.register(key, hostinfo={"Hostname": "new"})
    first = await first_map(n)
    assert {p["ID"] for p in first["Peers"]} == {ids[0], ids[2]}
    second = await new_client(server)
    await second.register(key, hostinfo={"Hostname": "second"})
    assert {p["ID"] for p in (await first_map(second))["Peers"]} >= {ids[0], ids[2]}
    # Logged once for that version of b, not once per viewer.
    assert caplog.text.count(f"cannot build the map entry of node {ids[1]}") == 1
    await second.close()
    for s in streams:
        await s.close()
    for c in (*clients, n):
        await c.close()


async def test_text_postgres_cannot_store_is_dropped_not_stored(server):
    _, key = await user_and_key(server)
    c = await new_client(server)
    resp = await c.register(key, hostinfo={"Hostname": "a\x00b", "OS": "linux", "DeviceModel": "\x00"})
    assert resp["MachineAuthorized"] is True
    node = next(iter(server.state.nodes.values()))
    assert node.hostname == "node" and node.hostinfo == {"OS": "linux"}
    assert await c.lite_update(Hostinfo={"Hostname": "n\x00ul", "OS": "linux"}) == 200
    assert await c.lite_update(Hostinfo={"Hostname": "fine", "OS": "linux"}) == 200
    assert server.state.nodes[node.id].hostname == "fine"
    resp = await c.register(key, Auth={"AuthKey": "hskey-auth-\x00"})
    assert "invalid Auth" in resp["Error"]
    await c.close()
