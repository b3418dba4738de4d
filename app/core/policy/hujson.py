"""HuJSON ("human JSON") → Python values.

HuJSON is JSON plus ``//`` line comments, ``/* */`` block comments and trailing commas in
arrays and objects (github.com/tailscale/hujson). Everything else follows RFC 8259 strictly,
as Go's ``encoding/json`` v2 does after ``hujson.Standardize``: no single quotes, no bare
keys, no NaN, no control characters inside strings, and duplicate object keys are an error.

The parser is a small recursive-descent reader that keeps line/column for its errors, so
``HuJSONError`` points at the offending character.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["HuJSONError", "loads"]

_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_MAX_DEPTH = 100       # policies nest ~6 deep; stay far from Python's recursion limit


class HuJSONError(ValueError):
    """Malformed HuJSON; ``line``/``column`` are 1-based."""

    def __init__(self, message: str, text: str, pos: int) -> None:
        self.line = text.count("\n", 0, pos) + 1
        self.column = pos - (text.rfind("\n", 0, pos) + 1) + 1
        self.pos = pos
        self.msg = message
        super().__init__(f"line {self.line}, column {self.column}: {message}")


def loads(text: str | bytes) -> Any:
    """Parse one HuJSON value; trailing content other than whitespace/comments is an error."""
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise HuJSONError("invalid UTF-8", "", 0) from exc
    text = text.removeprefix("\ufeff")
    parser = _Parser(text)
    parser.skip()
    value = parser.value(0)
    parser.skip()
    if parser.pos != len(text):
        parser.fail("unexpected content after the top-level value")
    return value


class _Parser:
    __slots__ = ("pos", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, message: str, pos: int | None = None) -> None:
        raise HuJSONError(message, self.text, self.pos if pos is None else pos)

    def skip(self) -> None:
        """Skip whitespace and comments."""
        text, n = self.text, len(self.text)
        while self.pos < n:
            ch = text[self.pos]
            if ch in " \t\r\n":
                self.pos += 1
            elif text.startswith("//", self.pos):
                end = text.find("\n", self.pos)
                self.pos = n if end < 0 else end + 1
            elif text.startswith("/*", self.pos):
                end = text.find("*/", self.pos + 2)
                if end < 0:
                    self.fail("unterminated block comment")
                self.pos = end + 2
            else:
                return

    def value(self, depth: int) -> Any:
        if depth > _MAX_DEPTH:
            self.fail("nesting too deep")
        if self.pos >= len(self.text):
            self.fail("unexpected end of input")
        ch = self.text[self.pos]
        if ch == "{":
            return self.obj(depth)
        if ch == "[":
            return self.arr(depth)
        if ch == '"':
            return self.string()
        for word, val in (("true", True), ("false", False), ("null", None)):
            if self.text.startswith(word, self.pos):
                self.pos += len(word)
                return val
        m = _NUMBER.match(self.text, self.pos)
        if m and m.end() > self.pos:
            self.pos = m.end()
            lit = m.group()
            if any(c in lit for c in ".eE"):
                return float(lit)
            return int(lit)
        self.fail(f"invalid character {ch!r} looking for beginning of value")

    def obj(self, depth: int) -> dict[str, Any]:
        self.pos += 1
        out: dict[str, Any] = {}
        while True:
            self.skip()
            if self.pos < len(self.text) and self.text[self.pos] == "}":
                self.pos += 1
                return out
            if self.pos >= len(self.text) or self.text[self.pos] != '"':
                self.fail("expected a string object key")
            key_pos = self.pos
            key = self.string()
            if key in out:
                self.fail(f"duplicate object key {key!r}", key_pos)
            self.skip()
            if self.pos >= len(self.text) or self.text[self.pos] != ":":
                self.fail("expected ':' after object key")
            self.pos += 1
            self.skip()
            out[key] = self.value(depth + 1)
            self.skip()
            if self.pos < len(self.text) and self.text[self.pos] == ",":
                self.pos += 1
                continue
            if self.pos < len(self.text) and self.text[self.pos] == "}":
                self.pos += 1
                return out
            self.fail("expected ',' or '}' in object")

    def arr(self, depth: int) -> list[Any]:
        self.pos += 1
        out: list[Any] = []
        while True:
            self.skip()
            if self.pos < len(self.text) and self.text[self.pos] == "]":
                self.pos += 1
                return out
            out.append(self.value(depth + 1))
            self.skip()
            if self.pos < len(self.text) and self.text[self.pos] == ",":
                self.pos += 1
                continue
            if self.pos < len(self.text) and self.text[self.pos] == "]":
                self.pos += 1
                return out
            self.fail("expected ',' or ']' in array")

    def string(self) -> str:
        text, n = self.text, len(self.text)
        start = self.pos
        self.pos += 1
        parts: list[str] = []
        chunk = self.pos
        while True:
            if self.pos >= n:
                self.fail("unterminated string", start)
            ch = text[self.pos]
            if ch == '"':
                parts.append(text[chunk:self.pos])
                self.pos += 1
                return "".join(parts)
            if ch == "\\":
                parts.append(text[chunk:self.pos])
                self.pos += 1
                if self.pos >= n:
                    self.fail("unterminated string", start)
                esc = text[self.pos]
                if esc == "u":
                    parts.append(self._unicode_escape())
                elif esc in _ESCAPES:
                    parts.append(_ESCAPES[esc])
                    self.pos += 1
                else:
                    self.fail(f"invalid escape sequence \\{esc}")
                chunk = self.pos
                continue
            if ch < " ":
                self.fail("control character in string")
            self.pos += 1

    def _unicode_escape(self) -> str:
        code = self._hex4(self.pos + 1)
        self.pos += 5
        if 0xD800 <= code < 0xDC00 and self.text.startswith("\\u", self.pos):
            low = self._hex4(self.pos + 2)
            if 0xDC00 <= low < 0xE000:
                self.pos += 6
                return chr(0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00))
        if 0xD800 <= code < 0xE000:
            return "\ufffd"  # lone surrogate: Go replaces it the same way
        return chr(code)

    def _hex4(self, at: int) -> int:
        digits = self.text[at:at + 4]
        if len(digits) != 4 or any(c not in "0123456789abcdefABCDEF" for c in digits):
            self.fail("invalid \\u escape", at)
        return int(digits, 16)
