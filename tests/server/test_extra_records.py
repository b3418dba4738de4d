"""dns.extra_records_path: the watched records file reaches a connected node as a DNS delta on
the same map stream; a broken file keeps the last good records and says why."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from app.config import dev_config
from app.core.extrarecords import parse_records, with_records
from app.server.serve import build, start, stop
from tests.server.conftest import Stream, new_client, user_and_key


def records(*pairs: tuple[str, str]) -> str:
    return json.dumps([{"name": n, "type": "AAAA" if ":" in v else "A", "value": v} for n, v in pairs])


@pytest.fixture
async def rec_server(tmp_path):
    path = tmp_path / "records.json"
    path.write_text(records(("grafana.tailnet.internal", "100.64.0.3")))
    cfg = dev_config(str(tmp_path), overrides={
        "listen_addr": "127.0.0.1:0", "metrics_listen_addr": "", "tuning.batch_change_delay": "20ms",
        "dns.extra_records_path": str(path)})
    services = await build(cfg)
    await start(services)
    try:
        yield services, path
    finally:
        await stop(services)


def extra(msg: dict) -> list[dict] | None:
    return (msg.get("DNSConfig") or {}).get("ExtraRecords")


async def test_file_changes_reach_a_connected_node_without_reconnecting(rec_server, caplog):
    server, path = rec_server
    _, key = await user_and_key(server)
    c = await new_client(server)
    await c.register(key, hostinfo={"Hostname": "dnsnode"})
    s = Stream(c)
    first = await s.wait(lambda m: "Node" in m)
    assert extra(first) == [{"Name": "grafana.tailnet.internal", "Type": "A", "Value": "100.64.0.3"}]
    session = server.batcher.sessions[first["Node"]["ID"]]

    mark = s.mark()
    path.write_text(records(("grafana.tailnet.internal", "100.64.0.4"), ("db.tailnet.internal", "fd7a:115c:a1e0::9")))
    m = await s.wait(lambda m: extra(m) is not None, after=mark, timeout=10)
    assert "Node" not in m and "Peers" not in m          # a delta, not a new full map
    assert extra(m) == [{"Name": "db.tailnet.internal", "Type": "AAAA", "Value": "fd7a:115c:a1e0::9"},
                        {"Name": "grafana.tailnet.internal", "Type": "A", "Value": "100.64.0.4"}]
    assert m["DNSConfig"]["Proxied"] is True              # the rest of the DNS config is kept
    assert server.batcher.sessions[first["Node"]["ID"]] is session   # same stream

    with caplog.at_level(logging.ERROR, logger="headscale.dns"):
        mark = s.mark()
        path.write_text('[{"name": "x", "type": "CNAME", "value": "y"}]')
        await asyncio.sleep(2.5)
        path.write_text("[not json")
        await asyncio.sleep(2.5)
    assert not any(extra(m) is not None for m in s.messages[mark:])   # nothing sent
    text = caplog.text
    assert "keeping the last good 2 record(s): record 0: type 'CNAME' is not supported" in text
    assert "invalid JSON at line 1" in text
    assert extra({"DNSConfig": server.state.settings.dns_config})[1]["Value"] == "100.64.0.4"

    mark = s.mark()
    path.write_text("[]")
    m = await s.wait(lambda m: "DNSConfig" in m, after=mark, timeout=10)
    assert extra(m) is None and m["DNSConfig"]["Proxied"] is True
    await s.close()


async def test_a_bad_file_at_start_is_one_error_line(tmp_path):
    path = tmp_path / "records.json"
    path.write_text('{"name": "a"}')
    cfg = dev_config(str(tmp_path), overrides={"listen_addr": "127.0.0.1:0", "metrics_listen_addr": "",
                                               "dns.extra_records_path": str(path)})
    with pytest.raises(SystemExit) as e:
        await build(cfg)
    assert str(e.value).startswith(f"error: dns.extra_records_path {path}: expected a JSON array")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("text, problem", [
    ("{}", "expected a JSON array"),
    ('[{"name": "a", "type": "A"}]', "record 0: name, type and value must be non-empty strings"),
    ('[{"name": "a", "type": "A", "value": "fd00::1"}]', "does not match type A"),
    ('[{"name": "a", "type": "A", "value": "1.2.3"}]', "is not an IP address"),
    ('[{"name": "a", "type": "A", "value": "1.2.3.4", "ttl": 5}]', "unknown field(s) ttl"),
])
def test_parse_problems(text, problem):
    with pytest.raises(ValueError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        parse_records(text)


def test_with_records_replaces_only_extra_records():
    base = {"Proxied": True, "ExtraRecords": [{"Name": "old", "Type": "A", "Value": "1.1.1.1"}]}
    assert with_records(base, []) == {"Proxied": True}
    got = with_records(base, parse_records(records(("new.", "100.64.0.1"))))
    assert got["ExtraRecords"] == [{"Name": "new", "Type": "A", "Value": "100.64.0.1"}]
