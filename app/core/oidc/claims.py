"""What headscale 0.29 does with a verified identity: normalise the claims, decide whether the
person may sign in (allow-lists), and derive the user record.

Facts kept from headscale: the user's key is the provider identifier ``iss`` + "/" + ``sub``
(cleaned of duplicate slashes and whitespace); ``preferred_username`` becomes the user name
when it is a valid headscale user name; the e-mail is stored only when it is verified or
verification is not required; display name and picture come from ``name`` and ``picture``.
Userinfo values win over ID token values when the userinfo ``sub`` is the same. Providers that
send ``email_verified`` as a string or ``groups`` as a single string are accepted.
Allow-lists: ``allowed_groups`` is always applied (exact strings, so Keycloak's "/admins"
is written as such); when ``email_verified_required`` is on and the e-mail is not verified,
any e-mail test (domains or users) refuses; ``allowed_domains`` compares the part after the
last "@"; ``allowed_users`` compares the whole e-mail address.
"""

from __future__ import annotations

import dataclasses
import re
from email.utils import parseaddr
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from app.core.usernames import valid_username


@dataclasses.dataclass
class Claims:
    iss: str = ""
    sub: str = ""
    name: str = ""
    email: str = ""
    email_verified: bool = False
    username: str = ""
    picture: str = ""
    groups: list[str] = dataclasses.field(default_factory=list)
    exp: float | None = None


def _flex_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value.strip().lower() in ("1", "t", "true")
    return False


def _flex_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def from_token(claims: dict[str, Any]) -> Claims:
    exp = claims.get("exp")
    return Claims(
        iss=_str(claims.get("iss")), sub=_str(claims.get("sub")), name=_str(claims.get("name")),
        email=_str(claims.get("email")), email_verified=_flex_bool(claims.get("email_verified")),
        username=_str(claims.get("preferred_username")), picture=_str(claims.get("picture")),
        groups=_flex_list(claims.get("groups")),
        exp=float(exp) if isinstance(exp, (int, float)) and not isinstance(exp, bool) else None,
    )


def merge_userinfo(c: Claims, info: Any) -> Claims:
    """Userinfo values (when its ``sub`` is the token's) over the token's; groups only if sent."""
    if not isinstance(info, dict) or _str(info.get("sub")) != c.sub:
        return c
    return dataclasses.replace(
        c,
        email=_str(info.get("email")) or c.email,
        email_verified=_flex_bool(info.get("email_verified")) or c.email_verified,
        username=_str(info.get("preferred_username")) or c.username,
        name=_str(info.get("name")) or c.name,
        picture=_str(info.get("picture")) or c.picture,
        groups=_flex_list(info["groups"]) if info.get("groups") is not None else c.groups,
    )


def clean_identifier(value: str) -> str:
    value = value.strip()
    if not value:
        return ""
    parts = urlsplit(value)
    if parts.scheme and re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", parts.scheme):
        segs = [s.strip() for s in parts.path.split("/") if s.strip()]
        path = "/" + "/".join(segs) if segs else ""
        return urlunsplit((parts.scheme.lower(), parts.netloc, path, parts.query, parts.fragment))
    return "/".join(s.strip() for s in value.split("/") if s.strip())


def identifier(c: Claims) -> str:
    """headscale's provider identifier: ``iss`` + "/" + ``sub`` (plain concatenation, so a
    ``sub`` of ".." never collapses into another user's)."""
    if not c.iss and not c.sub:
        return ""
    if not c.iss:
        ident = clean_identifier(c.sub)
        return ident if ident.startswith("/") else "/" + ident
    if not c.sub:
        return clean_identifier(c.iss)
    return clean_identifier(c.iss.rstrip("/") + "/" + c.sub.lstrip("/"))


class Denied(Exception):
    """The person may not sign in here. ``reason`` is a stable code for pages and logs."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def authorize(c: Claims, *, allowed_groups: list[str], allowed_domains: list[str], allowed_users: list[str],
              email_verified_required: bool) -> None:
    if allowed_groups and not any(g in c.groups for g in allowed_groups):
        raise Denied("group", "your account is not in any group allowed to sign in here")
    trust_email = not email_verified_required or c.email_verified
    if not trust_email and (allowed_domains or allowed_users):
        raise Denied("unverified_email", "your e-mail address is not verified at your identity provider")
    if allowed_domains:
        at = c.email.rfind("@")
        if at < 0 or c.email[at + 1:] not in allowed_domains:
            raise Denied("domain", "your e-mail domain is not allowed to sign in here")
    if allowed_users and c.email not in allowed_users:
        raise Denied("user", "your account is not allowed to sign in here")


def _valid_email(value: str) -> bool:
    name, addr = parseaddr(value)
    return bool(addr) and "@" in addr and addr == value.strip() and not name


def user_fields(c: Claims, *, email_verified_required: bool) -> dict[str, Any]:
    """The user columns headscale sets from claims; ``name`` is None when preferred_username is
    not a valid user name (the caller then keeps the existing name, as headscale does)."""
    return {
        "name": c.username if valid_username(c.username) else None,
        "email": c.email if (c.email_verified or not email_verified_required) and _valid_email(c.email) else "",
        "provider_identifier": identifier(c),
        "display_name": c.name,
        "profile_pic_url": c.picture,
    }
