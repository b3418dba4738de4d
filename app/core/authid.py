"""Ids of pending interactive requests (web registration, SSH check): ``hskey-authreq-<24 hex>``.

They travel in URLs (``/register/<id>``, ``/auth/<id>``) and CLI flags, so pages and commands
validate them before use (headscale does the same against XSS).
"""

from __future__ import annotations

import secrets

PREFIX = "hskey-authreq-"
HEX_LEN = 24


def new_auth_id() -> str:
    return PREFIX + secrets.token_hex(HEX_LEN // 2)


def is_auth_id(text: str) -> bool:
    body = text[len(PREFIX):]
    return (text.startswith(PREFIX) and len(body) == HEX_LEN
            and all(c in "0123456789abcdef" for c in body))
