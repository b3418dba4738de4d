from __future__ import annotations

import pytest

from app.core.policy.hujson import HuJSONError, loads


def test_comments_and_trailing_commas():
    text = """
    // a line comment
    {
      /* a block
         comment */
      "acls": [
        {"action": "accept", "src": ["*"], "dst": ["*:*"],},   // trailing commas
      ],
      "n": -1.5e2, "t": true, "f": false, "z": null,
    }
    """
    assert loads(text) == {"acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}],
                           "n": -150.0, "t": True, "f": False, "z": None}


def test_comment_markers_inside_strings_are_text():
    assert loads('{"a": "http://x/*y*/", "b": "//"}') == {"a": "http://x/*y*/", "b": "//"}


def test_escapes_and_surrogate_pairs():
    assert loads(r'"\u00e9\ud83d\ude00\n\t\"\\\/"') == "é😀\n\t\"\\/"
    assert loads(r'"\ud800"') == "\ufffd"      # lone surrogate, as Go decodes it


def test_bytes_and_bom():
    assert loads(b"\xef\xbb\xbf[1, 2,]") == [1, 2]


def test_integers_stay_integers():
    assert loads("[0, 10, -3]") == [0, 10, -3]
    assert isinstance(loads("65535"), int)


@pytest.mark.parametrize("text,fragment", [
    ("{'a': 1}", "expected a string object key"),
    ('{"a" 1}', "expected ':'"),
    ('{"a": 1 "b": 2}', "expected ',' or '}'"),
    ("[1 2]", "expected ',' or ']'"),
    ('{"a": 1, "a": 2}', "duplicate object key 'a'"),
    ('"abc', "unterminated string"),
    ('"a\tb"', "control character in string"),
    (r'"\x41"', "invalid escape sequence"),
    (r'"\u12"', "invalid \\u escape"),
    ("[1,,2]", "looking for beginning of value"),
    ("[01]", "expected ',' or ']'"),
    ("NaN", "looking for beginning of value"),
    ("{} {}", "unexpected content after the top-level value"),
    ("/* open", "unterminated block comment"),
    ("", "unexpected end of input"),
    ("[" * 200, "nesting too deep"),
])
def test_malformed(text, fragment):
    with pytest.raises(HuJSONError) as info:
        loads(text)
    assert fragment in str(info.value)


def test_error_position_is_line_and_column():
    with pytest.raises(HuJSONError) as info:
        loads('{\n  "a": [1,\n  2 3]\n}')
    assert (info.value.line, info.value.column) == (3, 5)
