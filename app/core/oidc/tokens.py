"""ID token verification (OpenID Connect Core 1.0 §3.1.3.7), with joserfc doing the JOSE work.

What is checked, in order: the token is a compact JWS whose ``alg`` is an asymmetric algorithm
the provider announced (never ``none``, never an HMAC: an HMAC "signed" with a public key is the
classic confusion attack); the key is the JWKS key named by ``kid`` (an unknown ``kid`` raises
UnknownKey so the caller refetches the JWKS once: key rotation); the signature; ``iss`` equals
the configured issuer; ``aud`` contains our client id; ``azp``, when present, is our client id;
``exp`` is in the future and ``iat`` not in the future, both with at most 60 s of clock skew;
``nonce`` equals the one bound to the browser; ``sub`` is a non-empty string.
"""

from __future__ import annotations

import base64
import hmac
import json
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

# Asymmetric signature algorithms only. HS* are refused (the "key" would be public), and so is none.
ASYMMETRIC_ALGS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512",
                   "EdDSA", "Ed25519")
MAX_SKEW = 60
MAX_TOKEN_BYTES = 64 * 1024


class TokenError(Exception):
    """The ID token is not acceptable; ``str()`` says why without quoting the token."""


class UnknownKey(TokenError):
    """The token names a key the cached JWKS does not have (refetch the JWKS once)."""


def allowed_algs(announced: list[str] | None) -> tuple[str, ...]:
    """The asymmetric algorithms the provider announced (RS256 when it announced nothing)."""
    if not announced:
        return ("RS256",)
    return tuple(a for a in announced if a in ASYMMETRIC_ALGS)


def parse_jwks(doc: Any) -> KeySet:
    """A JWKS document -> KeySet of its signing keys (keys we cannot use are skipped)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise TokenError("the provider's JWKS is not a JSON object with a 'keys' list")
    usable = []
    for k in doc["keys"]:
        if not isinstance(k, dict) or k.get("use", "sig") != "sig" or k.get("kty") not in ("RSA", "EC", "OKP"):
            continue
        usable.append(k)
    try:
        return KeySet.import_key_set({"keys": usable})
    except (JoseError, ValueError, TypeError) as exc:
        raise TokenError(f"the provider's JWKS holds an unusable key ({type(exc).__name__})") from None


def _b64json(part: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
        value = json.loads(raw)
    except (ValueError, TypeError):
        raise TokenError("the ID token is malformed") from None
    if not isinstance(value, dict):
        raise TokenError("the ID token is malformed")
    return value


def token_header(raw: str) -> dict[str, Any]:
    if not isinstance(raw, str) or len(raw) > MAX_TOKEN_BYTES:
        raise TokenError("the ID token is missing or too large")
    parts = raw.split(".")
    if len(parts) != 3:
        raise TokenError("the ID token is not a signed JWT (encrypted or malformed)")
    return _b64json(parts[0])


def _key_for(keys: KeySet, header: dict[str, Any]):
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise TokenError("the ID token's key id is malformed")
    candidates = [k for k in keys.keys if kid is None or k.kid == kid]
    if kid is None and len(candidates) != 1:
        # Without a kid only an unambiguous key set works.
        candidates = [k for k in candidates if _fits(k, header.get("alg", ""))]
    if not candidates:
        raise UnknownKey("the ID token is signed with a key the provider's JWKS does not list")
    if len(candidates) > 1:
        raise TokenError("the ID token names no key and the provider lists several")
    return candidates[0]


def _fits(key, alg: str) -> bool:
    kty = key.key_type
    return ((alg.startswith(("RS", "PS")) and kty == "RSA") or (alg.startswith("ES") and kty == "EC")
            or (alg in ("EdDSA", "Ed25519") and kty == "OKP"))


def verify_id_token(raw: str, keys: KeySet, *, issuer: str, client_id: str, nonce: str, now: float,
                    algs: tuple[str, ...] = ("RS256",), leeway: int = MAX_SKEW) -> dict[str, Any]:
    """The verified claims of an ID token, or TokenError/UnknownKey saying why not."""
    header = token_header(raw)
    alg = header.get("alg")
    if not isinstance(alg, str) or alg.lower() == "none":
        raise TokenError("the ID token is unsigned (alg none)")
    if alg not in algs or alg not in ASYMMETRIC_ALGS:
        raise TokenError(f"the ID token uses algorithm {alg[:20]!r}, which is not accepted")
    key = _key_for(keys, header)
    try:
        token = jwt.decode(raw, key, algorithms=[alg])
    except JoseError as exc:
        raise TokenError(f"the ID token's signature does not verify ({type(exc).__name__})") from None
    claims = token.claims
    registry = jwt.JWTClaimsRegistry(
        now=int(now), leeway=min(leeway, MAX_SKEW),
        iss={"essential": True, "value": issuer}, aud={"essential": True, "value": client_id},
        exp={"essential": True}, iat={"essential": True}, sub={"essential": True},
    )
    try:
        registry.validate(claims)
    except JoseError as exc:
        raise TokenError(_claim_reason(exc)) from None
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise TokenError("the ID token has no subject")
    azp = claims.get("azp")
    aud = claims.get("aud")
    if azp is not None and azp != client_id:
        raise TokenError("the ID token was issued to another client (azp)")
    if isinstance(aud, list) and len(aud) > 1 and azp is None:
        raise TokenError("the ID token has several audiences and no azp")
    got = claims.get("nonce")
    if not isinstance(got, str) or not hmac.compare_digest(got.encode(), nonce.encode()):
        raise TokenError("the ID token's nonce does not match this sign-in")
    return claims


def _claim_reason(exc: JoseError) -> str:
    claim = getattr(exc, "claim", "") or ""
    name = type(exc).__name__
    if name == "ExpiredTokenError":
        return "the ID token has expired"
    if name == "MissingClaimError":
        return f"the ID token lacks the {claim or 'required'} claim"
    return {
        "iss": "the ID token was issued by another issuer",
        "aud": "the ID token is meant for another client (aud)",
        "iat": "the ID token was issued in the future",
        "nbf": "the ID token is not valid yet",
        "exp": "the ID token's expiry is malformed",
    }.get(claim, f"the ID token's claims are invalid ({name})")
