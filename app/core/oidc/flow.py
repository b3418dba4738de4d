"""The pieces of the authorization-code flow that need no I/O: discovery documents, PKCE,
state/nonce values, the authorization URL, and the cookie names that bind a sign-in to a browser.

Wire formats: discovery is OpenID Connect Discovery 1.0 §3 (JSON at
``<issuer>/.well-known/openid-configuration``); PKCE is RFC 7636 (S256: base64url(SHA-256(verifier))
without padding; plain: the verifier itself).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import secrets
from typing import Any
from urllib.parse import urlencode, urlsplit


class DiscoveryError(Exception):
    """The provider's discovery document is unusable; ``str()`` says what to fix."""


@dataclasses.dataclass(frozen=True)
class Endpoints:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str = ""
    id_token_algs: tuple[str, ...] = ()
    token_auth_methods: tuple[str, ...] = ("client_secret_basic",)


def discovery_url(issuer: str) -> str:
    return issuer.rstrip("/") + "/.well-known/openid-configuration"


def parse_discovery(doc: Any, issuer: str) -> Endpoints:
    if not isinstance(doc, dict):
        raise DiscoveryError("the discovery document is not a JSON object")
    # OIDC Discovery §4.3: the document's issuer must be exactly the configured one.
    if doc.get("issuer") != issuer and doc.get("issuer") != issuer.rstrip("/"):
        raise DiscoveryError(f"the provider calls itself {str(doc.get('issuer'))[:200]!r}, not {issuer!r}: "
                             "set oidc.issuer to the provider's issuer exactly")
    need = {}
    for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        value = doc.get(name)
        if not isinstance(value, str) or urlsplit(value).scheme not in ("http", "https"):
            raise DiscoveryError(f"the discovery document has no usable {name}")
        need[name] = value
    userinfo = doc.get("userinfo_endpoint")
    algs = doc.get("id_token_signing_alg_values_supported")
    methods = doc.get("token_endpoint_auth_methods_supported")
    return Endpoints(
        issuer=str(doc["issuer"]), **need,
        userinfo_endpoint=userinfo if isinstance(userinfo, str) else "",
        id_token_algs=tuple(a for a in algs if isinstance(a, str)) if isinstance(algs, list) else (),
        token_auth_methods=(tuple(m for m in methods if isinstance(m, str)) if isinstance(methods, list)
                            else ("client_secret_basic",)),
    )


def random_token(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


def pkce_verifier() -> str:
    # 43..128 characters from the unreserved set (RFC 7636 §4.1): 32 random bytes -> 43.
    return secrets.token_urlsafe(48)


def pkce_challenge(verifier: str, method: str) -> str:
    if method == "plain":
        return verifier
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def authorization_url(ep: Endpoints, *, client_id: str, redirect_uri: str, scope: list[str], state: str,
                      nonce: str, pkce: tuple[str, str] | None = None,
                      extra_params: dict[str, str] | None = None) -> str:
    """``pkce`` is (challenge, method). Extra params cannot override the protocol's own."""
    params: dict[str, str] = {str(k): str(v) for k, v in (extra_params or {}).items()}
    params.update({
        "response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri,
        "scope": " ".join(scope), "state": state, "nonce": nonce,
    })
    if pkce is not None:
        params["code_challenge"], params["code_challenge_method"] = pkce
    sep = "&" if urlsplit(ep.authorization_endpoint).query else "?"
    return ep.authorization_endpoint + sep + urlencode(params)


def token_request(ep: Endpoints, *, client_id: str, client_secret: str, code: str, redirect_uri: str,
                  verifier: str | None) -> tuple[dict[str, str], dict[str, str]]:
    """(form fields, headers) of the code exchange (RFC 6749 §4.1.3). The secret goes in HTTP
    Basic unless the provider only supports client_secret_post."""
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
    headers = {"Accept": "application/json"}
    if verifier:
        form["code_verifier"] = verifier
    methods = ep.token_auth_methods
    if client_secret and "client_secret_basic" not in methods and "client_secret_post" in methods:
        form.update(client_id=client_id, client_secret=client_secret)
    elif client_secret:
        from urllib.parse import quote

        pair = f"{quote(client_id, safe='')}:{quote(client_secret, safe='')}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
    else:
        form["client_id"] = client_id
    return form, headers


def cookie_name(kind: str, value: str) -> str:
    """headscale's per-sign-in cookie names (``state_<first 6>``), so parallel sign-ins in one
    browser do not overwrite each other."""
    return f"{kind}_{value[:6]}"
