"""Decoding untrusted JSON: depth limit, valid Unicode only, real numbers only."""

import json

import pytest

from app.core import jsonsafe
from app.core.jsonsafe import JSONError, loads


def test_ordinary_json_decodes_like_json_loads():
    doc = {"a": [1, 2.5, {"b": "[[[[ {{ not brackets"}], "c": None, "d": True, "e": "😀 é"}
    raw = json.dumps(doc).encode()
    assert loads(raw) == doc
    assert loads(raw.decode()) == doc
    assert loads(bytearray(raw)) == doc
    assert loads(b'"\\ud83d\\ude00"') == "😀"       # a surrogate *pair* is fine


@pytest.mark.parametrize("levels", [65, 15_000, 100_000])
def test_deep_nesting_is_refused_without_recursion(levels):
    for raw in (b"[" * levels + b"]" * levels, b'{"a":' * levels + b"1" + b"}" * levels, b"[" * levels):
        with pytest.raises(JSONError, match="nested deeper than 64"):
            loads(raw)


def test_depth_limit_is_exact_and_ignores_brackets_in_strings():
    assert loads(b"[" * 64 + b"]" * 64) is not None
    assert jsonsafe.nesting_depth('["[[[[[", {"x": "]]]{{{"}]') == 2
    many_flat = b"[" + b",".join([b"[]"] * 1000) + b"]"   # many brackets, depth 2
    assert len(loads(many_flat)) == 1000
    with pytest.raises(JSONError):
        loads(b"[" * 10, max_depth=5)


@pytest.mark.parametrize("raw", [
    b'"\\ud800"', b'{"name": "\\udfff"}', b'["ok", "\\uD83D x"]', b'{"\\ud800": 1}',
    '"\ud800"',                 # a str that already holds one
])
def test_lone_surrogates_are_refused(raw):
    with pytest.raises(JSONError, match="surrogate"):
        loads(raw)


@pytest.mark.parametrize("raw", [b"\xff\xfe{", b'{"a": "\xc3"}', b'"\xed\xa0\x80"'])
def test_bytes_that_are_not_utf8_are_refused(raw):
    with pytest.raises(JSONError):
        loads(raw)


@pytest.mark.parametrize("raw", [b"NaN", b"[Infinity]", b'{"a": -Infinity}', b"1e999", b"[-1e400]"])
def test_numbers_go_cannot_decode_are_refused(raw):
    with pytest.raises(JSONError):
        loads(raw)


@pytest.mark.parametrize("raw", [b"", b"{", b"[1,]", b"1" * 5000, b"{'a': 1}"])
def test_invalid_json_is_a_json_error(raw):
    with pytest.raises(JSONError):
        loads(raw)


def test_json_error_is_a_value_error():
    assert issubclass(JSONError, ValueError)
    assert jsonsafe.valid_text("héllo") and not jsonsafe.valid_text("a\ud800")


def test_nul_characters_are_refused_unless_allowed():
    for raw in (b'"a\\u0000b"', b'{"k": ["\\u0000"]}', b'{"\\u0000": 1}'):
        with pytest.raises(JSONError, match="NUL"):
            loads(raw)
    assert loads(b'{"k": "a\\u0000b"}', allow_nul=True) == {"k": "a\x00b"}
    assert loads(b'"\\\\u0000"') == "\\u0000"     # an escaped backslash, then text
