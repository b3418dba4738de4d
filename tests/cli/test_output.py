"""Output formatting helpers."""

import json

import pytest
import yaml

from app.cli.output import dump, fmt_time, parse_time, short_key, table


def test_dump_formats():
    obj = {"id": "1", "tags": ["tag:a"], "note": "multi\nline"}
    assert dump(obj, "json") == '{\n\t"id": "1",\n\t"tags": [\n\t\t"tag:a"\n\t],\n\t"note": "multi\\nline"\n}'
    assert dump(obj, "json-line") == '{"id":"1","tags":["tag:a"],"note":"multi\\nline"}'
    assert yaml.safe_load(dump(obj, "yaml")) == obj
    assert dump([], "json") == "[]"
    assert json.loads(dump("hskey-api-x", "json")) == "hskey-api-x"
    with pytest.raises(ValueError):
        dump(obj, "xml")


def test_table_alignment_and_multiline_cells():
    text = table(["ID", "Tags"], [["1", "tag:a\ntag:bb"], ["10", ""]])
    assert text.splitlines() == ["ID | Tags", "1  | tag:a", "   | tag:bb", "10 |"]


@pytest.mark.parametrize("raw, shown", [
    ("2026-07-01T12:00:00Z", "2026-07-01 12:00:00"),
    ("2026-07-01T12:00:00.123456789Z", "2026-07-01 12:00:00"),
    ("2026-07-01T14:00:00+02:00", "2026-07-01 12:00:00"),
    ("0001-01-01T00:00:00Z", ""),
    (None, ""),
    ("garbage", ""),
])
def test_times(raw, shown):
    assert fmt_time(raw) == shown


def test_parse_time_is_utc():
    assert parse_time("2026-07-01T14:00:00+02:00").utcoffset().total_seconds() == 0


def test_short_key_is_tailscales_debug_form():
    # "[" + first 5 base64 characters of the raw key + "]"
    assert short_key("nodekey:" + "22" * 32) == "[IiIiI]"
    assert short_key("mkey:" + "00" * 32) == ""
    assert short_key("") == "" and short_key(None) == "" and short_key("mkey:zz") == ""
