"""ID token checks (app/core/oidc/tokens.py) with tokens made here by joserfc, and the claims rules."""

from __future__ import annotations

import base64
import json

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from app.core.oidc import claims as C
from app.core.oidc import flow
from app.core.oidc.tokens import TokenError, UnknownKey, allowed_algs, parse_jwks, verify_id_token

ISS = "https://idp.example.com"
CLIENT = "headscale"
NONCE = "n-0123456789"
NOW = 1_800_000_000

RSA = RSAKey.generate_key(2048, private=True, parameters={"kid": "k1", "use": "sig"})
OTHER = RSAKey.generate_key(2048, private=True, parameters={"kid": "k1", "use": "sig"})
EC = ECKey.generate_key("P-256", private=True, parameters={"kid": "e1", "use": "sig"})
JWKS = parse_jwks({"keys": [RSA.as_dict(private=False), EC.as_dict(private=False)]})
ALGS = ("RS256", "ES256")


def claims(**over):
    c = {"iss": ISS, "aud": CLIENT, "sub": "alice", "iat": NOW - 10, "exp": NOW + 300, "nonce": NONCE}
    c.update(over)
    return {k: v for k, v in c.items() if v is not None}


def sign(c, key=RSA, alg="RS256", kid="k1") -> str:
    header = {"alg": alg}
    if kid is not None:
        header["kid"] = kid
    return jwt.encode(header, c, key, algorithms=[alg])


def verify(token, **kw):
    args = {"issuer": ISS, "client_id": CLIENT, "nonce": NONCE, "now": NOW, "algs": ALGS}
    args.update(kw)
    return verify_id_token(token, JWKS, **args)


def b64(obj) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def test_a_good_token_verifies_with_rsa_and_ec():
    assert verify(sign(claims()))["sub"] == "alice"
    assert verify(sign(claims(), EC, "ES256", "e1"))["sub"] == "alice"
    assert verify(sign(claims(aud=[CLIENT])))["sub"] == "alice"


@pytest.mark.parametrize("case, token_kw, verify_kw, message", [
    ("wrong key", {"key": OTHER}, {}, "signature does not verify"),
    ("wrong aud", {"c": claims(aud="someone-else")}, {}, "another client"),
    ("wrong iss", {"c": claims(iss="https://evil.example.com")}, {}, "another issuer"),
    ("expired", {"c": claims(exp=NOW - 61)}, {}, "expired"),
    ("issued in the future", {"c": claims(iat=NOW + 120)}, {}, "future"),
    ("bad nonce", {"c": claims(nonce="other")}, {}, "nonce"),
    ("no nonce", {"c": claims(nonce=None)}, {}, "nonce"),
    ("no exp", {"c": claims(exp=None)}, {}, "exp"),
    ("foreign azp", {"c": claims(azp="other-client")}, {}, "azp"),
    ("several audiences, no azp", {"c": claims(aud=[CLIENT, "other"])}, {}, "azp"),
    ("algorithm not announced", {"key": EC, "alg": "ES256", "kid": "e1"}, {"algs": ("RS256",)}, "not accepted"),
])
def test_bad_tokens_are_refused(case, token_kw, verify_kw, message):
    c = token_kw.pop("c", claims())
    with pytest.raises(TokenError) as exc:
        verify(sign(c, **token_kw), **verify_kw)
    assert message in str(exc.value), case


def test_clock_skew_up_to_60_seconds_is_tolerated():
    assert verify(sign(claims(exp=NOW - 30)))["sub"] == "alice"
    assert verify(sign(claims(iat=NOW + 30)))["sub"] == "alice"
    with pytest.raises(TokenError):
        verify(sign(claims(exp=NOW - 30)), leeway=3600, now=NOW + 40)   # the cap is 60 s


def test_alg_none_is_refused():
    token = f"{b64({'alg': 'none', 'kid': 'k1'})}.{b64(claims())}."
    with pytest.raises(TokenError, match="unsigned"):
        verify(token, algs=("none", "RS256"))


def test_hmac_with_the_public_key_is_refused():
    # The classic confusion: HS256 "signed" with the RSA public key's bytes.
    # joserfc itself refuses to make one, so it is made by hand.
    import hashlib
    import hmac

    pub = RSA.as_pem(private=False)
    head = f"{b64({'alg': 'HS256', 'kid': 'k1'})}.{b64(claims())}"
    sig = base64.urlsafe_b64encode(hmac.new(pub, head.encode(), hashlib.sha256).digest()).rstrip(b"=").decode()
    token = f"{head}.{sig}"
    with pytest.raises(TokenError, match="not accepted"):
        verify(token, algs=("HS256", "RS256"))
    assert allowed_algs(["HS256", "none", "RS256"]) == ("RS256",)


def test_unknown_kid_asks_for_a_refetch():
    with pytest.raises(UnknownKey):
        verify(sign(claims(), kid="rotated"))


def test_garbage_is_refused_without_a_traceback():
    for token in ("", "a.b", "a.b.c.d.e", "!!!.???.***", "x" * 70000, f"{b64([1])}.{b64({})}.sig"):
        with pytest.raises(TokenError):
            verify(token)


# ---- claims ---------------------------------------------------------------------------------

def test_identifier_is_iss_slash_sub_as_headscale():
    assert C.identifier(C.Claims(iss="https://idp.example.com/", sub="/abc")) == "https://idp.example.com/abc"
    assert C.identifier(C.Claims(iss="https://idp.example.com", sub="..")) == "https://idp.example.com/.."
    assert C.identifier(C.Claims(iss="", sub="abc")) == "/abc"
    assert C.identifier(C.Claims(iss="HTTPS://idp.example.com//realms//x", sub="u1")) == \
        "https://idp.example.com/realms/x/u1"


def test_flexible_claims_and_userinfo_merge():
    c = C.from_token({"iss": ISS, "sub": "s", "email_verified": "true", "groups": "admins", "exp": 5})
    assert c.email_verified is True and c.groups == ["admins"] and c.exp == 5.0
    merged = C.merge_userinfo(c, {"sub": "s", "email": "a@example.com", "groups": ["/staff"], "name": "A"})
    assert (merged.email, merged.groups, merged.name) == ("a@example.com", ["/staff"], "A")
    assert C.merge_userinfo(c, {"sub": "someone-else", "email": "x@y"}) == c


def _authorize(c, **kw):
    args = {"allowed_groups": [], "allowed_domains": [], "allowed_users": [], "email_verified_required": True}
    args.update(kw)
    C.authorize(c, **args)


def test_allow_lists():
    alice = C.Claims(sub="a", email="alice@example.com", email_verified=True, groups=["/staff"])
    _authorize(alice, allowed_groups=["/staff"], allowed_domains=["example.com"],
               allowed_users=["alice@example.com"])
    for kw, reason in [({"allowed_groups": ["staff"]}, "group"), ({"allowed_domains": ["example.org"]}, "domain"),
                       ({"allowed_users": ["bob@example.com"]}, "user")]:
        with pytest.raises(C.Denied) as exc:
            _authorize(alice, **kw)
        assert exc.value.reason == reason
    unverified = C.Claims(sub="b", email="bob@example.com", email_verified=False)
    with pytest.raises(C.Denied) as exc:
        _authorize(unverified, allowed_domains=["example.com"])
    assert exc.value.reason == "unverified_email"
    _authorize(unverified, allowed_domains=["example.com"], email_verified_required=False)
    _authorize(unverified)     # no e-mail rule: verification does not matter
    with pytest.raises(C.Denied):   # "@" inside the local part: the domain is after the last one
        _authorize(C.Claims(email="x@example.com@evil.test", email_verified=True), allowed_domains=["example.com"])


def test_user_fields():
    c = C.Claims(iss=ISS, sub="s1", username="alice", email="alice@example.com", email_verified=False,
                 name="Alice", picture="https://p/x.png")
    f = C.user_fields(c, email_verified_required=True)
    assert f == {"name": "alice", "email": "", "provider_identifier": f"{ISS}/s1", "display_name": "Alice",
                 "profile_pic_url": "https://p/x.png"}
    assert C.user_fields(c, email_verified_required=False)["email"] == "alice@example.com"
    assert C.user_fields(C.Claims(iss=ISS, sub="s", username="bad name"), email_verified_required=True)["name"] is None


# ---- flow helpers ---------------------------------------------------------------------------

def test_pkce_s256_matches_rfc7636_appendix_b():
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert flow.pkce_challenge(verifier, "S256") == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    assert flow.pkce_challenge(verifier, "plain") == verifier
    assert 43 <= len(flow.pkce_verifier()) <= 128


def test_discovery_must_name_the_configured_issuer():
    doc = {"issuer": ISS, "authorization_endpoint": ISS + "/auth", "token_endpoint": ISS + "/token",
           "jwks_uri": ISS + "/jwks", "id_token_signing_alg_values_supported": ["RS256"]}
    ep = flow.parse_discovery(doc, ISS)
    url = flow.authorization_url(ep, client_id=CLIENT, redirect_uri="https://hs/oidc/callback",
                                 scope=["openid", "email"], state="st", nonce="no", pkce=("ch", "S256"),
                                 extra_params={"domain_hint": "example.com", "state": "evil"})
    assert "state=st" in url and "evil" not in url and "code_challenge_method=S256" in url
    assert "domain_hint=example.com" in url and "scope=openid+email" in url
    with pytest.raises(flow.DiscoveryError, match="calls itself"):
        flow.parse_discovery({**doc, "issuer": "https://evil.example.com"}, ISS)
    with pytest.raises(flow.DiscoveryError, match="jwks_uri"):
        flow.parse_discovery({**doc, "jwks_uri": None}, ISS)
