"""Decoding JSON that comes from outside (clients, the REST API, DERP logins).

``loads`` is ``json.loads`` with the limits the rest of the code relies on:

* nesting at most ``MAX_DEPTH`` arrays/objects deep, checked *before* decoding, so a body
  like ``[[[[…]]]]`` 100,000 levels deep is refused instead of raising RecursionError
  (here or later, when the value is encoded again);
* text is valid Unicode: bytes must be UTF-8 (or UTF-16/32, which JSON allows), and a
  ``\\ud800`` escape that is not half of a surrogate pair is refused, so no string that
  cannot be written to SQLite or encoded as UTF-8 gets past the edge;
* no NUL character in any string (unless the caller asks), which PostgreSQL cannot store;
* only real JSON numbers: ``NaN``/``Infinity`` and literals that overflow a float
  (``1e999``) are refused; re-encoding them would send invalid JSON to Go clients.

Every refusal is a ``JSONError`` (a ValueError) whose message is safe to show the sender.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

# Real messages nest 5-6 levels (MapRequest -> Hostinfo -> NetInfo -> DERPLatency); policies
# a few more. 64 leaves room while keeping every recursive walk far from Python's limit.
MAX_DEPTH = 64

# A string literal (skipped whole) or one bracket; used only when brackets are numerous.
# Possessive quantifiers: linear time even on an unterminated string.
_TOKENS_STR = re.compile(r'"(?:[^"\\]++|\\.)*+"|[\[\]{}]', re.DOTALL)
# A \uD800-\uDFFF escape: only then is the decoded value walked for lone surrogates.
_SURROGATE_ESCAPE_STR = re.compile(r"\\u[dD][89a-fA-F]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_NUL = re.compile("\x00")


class JSONError(ValueError):
    """The text is not JSON this server accepts; the message says why."""


def _reject_constant(name: str) -> Any:
    raise JSONError(f"invalid JSON number {name}")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise JSONError("JSON number out of range")
    return value


# Built once: json.loads with hooks would build a decoder per call.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)


def nesting_depth(data: str) -> int:
    """The deepest array/object nesting in ``data`` (brackets inside strings do not count)."""
    depth = deepest = 0
    for m in _TOKENS_STR.finditer(data):
        tok = m.group()
        if len(tok) != 1:
            continue
        if tok in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def check_depth(data: str, max_depth: int = MAX_DEPTH) -> None:
    """Raise JSONError when ``data`` nests deeper than ``max_depth``."""
    brackets = data.count("[") + data.count("{")
    if brackets <= max_depth:
        return   # the common case: cannot be deeper than the number of brackets
    if nesting_depth(data) > max_depth:
        raise JSONError(f"JSON nested deeper than {max_depth} levels")


def has_lone_surrogate(value: Any) -> bool:
    """Whether a decoded JSON value holds a string (or key) that is not valid Unicode text."""
    return _any_string(value, _LONE_SURROGATE)


def has_nul(value: Any) -> bool:
    """Whether a decoded JSON value holds a string (or key) with a NUL character."""
    return _any_string(value, _NUL)


def _any_string(value: Any, pattern: re.Pattern[str]) -> bool:
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            if pattern.search(v):
                return True
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return False


def loads(data: bytes | bytearray | memoryview | str, *, max_depth: int = MAX_DEPTH, allow_nul: bool = False) -> Any:
    """Decode untrusted JSON under the limits above; raises JSONError.

    A NUL character (``\\u0000``) is refused too unless ``allow_nul``: PostgreSQL cannot store
    it in a text column. Callers that allow it clean the values themselves (app.core.hostinfo).
    """
    if isinstance(data, (bytes, bytearray, memoryview)):
        raw = bytes(data)
        try:   # what json.loads does with bytes: UTF-8/16/32, surrogates let through (checked below)
            text = raw.decode(json.detect_encoding(raw), "surrogatepass")
        except UnicodeDecodeError:
            raise JSONError("JSON text is not valid UTF-8") from None
    else:
        text = data
    check_depth(text, max_depth)
    try:
        value = _DECODER.decode(text)
    except JSONError:
        raise
    except RecursionError:   # cannot happen after check_depth; kept as a last line of defence
        raise JSONError(f"JSON nested deeper than {max_depth} levels") from None
    except ValueError as exc:   # json.JSONDecodeError, and int literals beyond the digit limit
        raise JSONError(f"invalid JSON: {exc}") from None
    if _LONE_SURROGATE.search(text) or (_SURROGATE_ESCAPE_STR.search(text) and has_lone_surrogate(value)):
        raise JSONError("JSON text holds invalid Unicode (a lone surrogate)")
    if not allow_nul and "\\u0000" in text and has_nul(value):
        raise JSONError("JSON text holds a NUL character (\\u0000)")
    return value


def valid_text(value: str) -> bool:
    """Whether ``value`` can be encoded as UTF-8 (no lone surrogates)."""
    return not _LONE_SURROGATE.search(value)
