"""headscale's user-name rule (util.ValidateUsername), as a pure predicate.

At least 2 bytes; the first *byte*, read as a code point, is a letter; then letters, digits,
``-``, ``.``, ``_`` and at most one ``@``. (app/store/users.py enforces the same rule on insert.)
"""

from __future__ import annotations

import unicodedata


def username_problem(name: str) -> str | None:
    """None when ``name`` is a valid user name, else what is wrong with it."""
    raw = name.encode()
    if len(raw) < 2:
        return "username must be at least 2 characters long"
    if not unicodedata.category(chr(raw[0])).startswith("L"):
        return "username must start with a letter"
    if name.count("@") > 1:
        return "username cannot contain more than one '@'"
    for ch in name:
        cat = unicodedata.category(ch)
        if not (cat.startswith("L") or cat == "Nd" or ch in "-._@"):
            return f"username contains invalid character: {ch!r}"
    return None


def valid_username(name: str) -> bool:
    return username_problem(name) is None
