"""ACME decisions without a network: renewal time, backoff, operator messages, TLS-ALPN-01 cert."""

from __future__ import annotations

import datetime
import hashlib
import ssl

from cryptography import x509

from app.core import acme

NOW = datetime.datetime(2026, 11, 30, 12, 0, tzinfo=datetime.UTC)


def test_renewal_time():
    not_after = NOW + datetime.timedelta(days=90)
    assert acme.seconds_until_renewal(not_after, 30 * 86400, NOW) == 60 * 86400
    assert acme.seconds_until_renewal(not_after, 100 * 86400, NOW) == 0.0   # already due


def test_backoff_doubles_up_to_the_cap_and_honours_retry_after():
    assert [acme.backoff(n, 60, 500) for n in (1, 2, 3, 4, 5)] == [60, 120, 240, 480, 500]
    assert acme.backoff(1, 60, 1000, retry_after=3600) == 3600
    assert acme.backoff(3, 60, 1000, retry_after=10) == 240


def test_explain_names_the_problem_and_what_to_do():
    line = acme.explain(acme.RATE_LIMITED, "too many certificates already issued")
    assert line.startswith("rateLimited: too many certificates") and "retrying later" in line
    line = acme.explain("urn:ietf:params:acme:error:connection", "")
    assert "no detail" in line and "tls_letsencrypt_listen" in line
    assert "see the CA's message" in acme.explain("urn:x:odd", "d")


def test_tls_alpn01_certificate_carries_the_key_authorization_digest():
    cert_pem, key_pem = acme.tls_alpn01_certificate("hs.example.com", "token.thumb", now=NOW)
    cert = x509.load_pem_x509_certificate(cert_pem)
    ext = cert.extensions.get_extension_for_oid(acme.ACME_IDENTIFIER_OID)
    assert ext.critical
    assert ext.value.value == b"\x04\x20" + hashlib.sha256(b"token.thumb").digest()
    assert acme.certificate_names(cert_pem) == ["hs.example.com"]
    assert b"PRIVATE KEY" in key_pem
    not_before, not_after, serial = acme.certificate_dates(cert_pem)
    assert not_before < NOW < not_after and serial


def test_retry_after_header():
    assert acme.parse_retry_after("120", NOW) == 120
    assert acme.parse_retry_after("Mon, 30 Nov 2026 13:00:00 GMT", NOW) == 3600
    assert acme.parse_retry_after("Mon, 30 Nov 2026 11:00:00 GMT", NOW) == 0
    assert acme.parse_retry_after("", NOW) is None and acme.parse_retry_after("soon", NOW) is None


def client_hello(alpn: list[str] | None) -> bytes:
    """A real ClientHello from Python's TLS stack, as the handshake message (record header off)."""
    ctx = ssl.create_default_context()
    if alpn:
        ctx.set_alpn_protocols(alpn)
    out = ssl.MemoryBIO()
    obj = ctx.wrap_bio(ssl.MemoryBIO(), out, server_hostname="hs.example.com")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    record = out.read()
    assert record[0] == 22   # a TLS handshake record
    return record[5:]


def test_client_hello_alpn():
    assert acme.client_hello_alpn(client_hello(["acme-tls/1"])) == ["acme-tls/1"]
    assert acme.client_hello_alpn(client_hello(["h2", "http/1.1"])) == ["h2", "http/1.1"]
    assert acme.client_hello_alpn(client_hello(None)) == []
    hello = client_hello(["acme-tls/1"])
    assert acme.client_hello_alpn(hello[:40]) is None
    assert acme.client_hello_alpn(b"\x02" + hello[1:]) is None
    assert acme.client_hello_alpn(b"") is None


def test_client_hello_alpn_never_raises_on_mangled_input():
    import random

    rng = random.Random(9)
    hello = bytearray(client_hello(["acme-tls/1", "http/1.1"]))
    for _ in range(3000):
        data = bytearray(hello)
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        data = data[: rng.randint(0, len(data))]
        out = acme.client_hello_alpn(bytes(data))
        assert out is None or all(isinstance(n, str) for n in out)
