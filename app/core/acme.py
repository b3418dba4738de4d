"""ACME (RFC 8555) decisions that need no network: when to renew, how long to back off, what an
ACME error means for the operator, and the TLS-ALPN-01 validation certificate (RFC 8737).

The protocol itself (JWS, nonces, orders) is PyPI ``acme`` + ``josepy`` in app/service/acme.py.
``acme`` 5.x no longer builds TLS-ALPN-01 certificates, so that one piece lives here:

    a self-signed certificate for the hostname (SAN dNSName) with the critical extension
    id-pe-acmeIdentifier (1.3.6.1.5.5.7.1.31) whose value is the DER OCTET STRING of
    SHA-256(key authorization); served only to a TLS client offering ALPN "acme-tls/1".
"""

from __future__ import annotations

import datetime
import email.utils
import hashlib

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID, ObjectIdentifier

ACME_TLS_ALPN = "acme-tls/1"
ACME_IDENTIFIER_OID = ObjectIdentifier("1.3.6.1.5.5.7.1.31")
RATE_LIMITED = "urn:ietf:params:acme:error:rateLimited"
ACCOUNT_GONE = "urn:ietf:params:acme:error:accountDoesNotExist"

BACKOFF_FIRST = 60.0          # seconds after the first failed renewal
BACKOFF_MAX = 6 * 3600.0      # never wait longer than this between renewal attempts
RENEW_MIN_INTERVAL = 60.0     # a fresh certificate already inside the window is renewed this often


def renew_at(not_after: datetime.datetime, renew_before: float) -> datetime.datetime:
    """When a certificate valid until ``not_after`` is renewed (``renew_before`` seconds early)."""
    return not_after - datetime.timedelta(seconds=renew_before)


def seconds_until_renewal(not_after: datetime.datetime, renew_before: float, now: datetime.datetime) -> float:
    return max(0.0, (renew_at(not_after, renew_before) - now).total_seconds())


def backoff(failures: int, first: float = BACKOFF_FIRST, cap: float = BACKOFF_MAX,
            retry_after: float | None = None) -> float:
    """Wait before attempt ``failures + 1``: doubling from ``first``, at most ``cap``; a CA's
    Retry-After (rate limits) wins when it asks for longer."""
    wait = min(cap, first * (2 ** max(0, failures - 1)))
    if retry_after is not None and retry_after > wait:
        wait = retry_after
    return wait


def explain(error_type: str, detail: str) -> str:
    """One line an operator can act on, for an ACME problem document."""
    kind = error_type.rsplit(":", 1)[-1] if error_type else "error"
    hints = {
        "rateLimited": "the CA's rate limit was hit; retrying later (do not delete the cache "
                       "directory: it holds the account and certificate that avoid new orders)",
        "unauthorized": "validation failed: check that the hostname resolves to this server and "
                        "that the challenge port is reachable from the internet",
        "connection": "the CA could not connect to this server for validation: check DNS, "
                      "firewalls and tls_letsencrypt_listen / the TLS port",
        "dns": "the CA could not resolve the hostname: check its DNS records",
        "incorrectResponse": "the CA got a wrong challenge answer: is another server answering "
                             "for this hostname?",
        "tls": "the TLS-ALPN-01 validation failed: the CA must reach this server's TLS listener "
               "on port 443",
        "rejectedIdentifier": "the CA refuses to issue for this hostname",
        "malformed": "the CA refused the request as malformed",
    }
    hint = hints.get(kind, "see the CA's message")
    return f"{kind}: {detail or 'no detail'} ({hint})"


def parse_retry_after(value: str, now: datetime.datetime) -> float | None:
    """A Retry-After header (seconds, or an HTTP date) as seconds from ``now``; None if absent or bad."""
    value = (value or "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return max(0.0, (when - now).total_seconds())


def client_hello_alpn(message: bytes) -> list[str] | None:
    """The ALPN protocol names a TLS ClientHello offers (RFC 7301), from the handshake message
    (4-byte header included); [] without the extension, None when the bytes do not parse.

        u8 type=1, u24 len | u16 version | 32 random | u8+ session id | u16+ cipher suites |
        u8+ compression | u16+ extensions: (u16 type, u16+ data)*; ALPN is type 16, its data a
        u16+ list of u8+ names
    """
    try:
        if message[0] != 1:
            return None
        i = 4 + 2 + 32
        i += 1 + message[i]
        i += 2 + int.from_bytes(message[i:i + 2], "big")
        i += 1 + message[i]
        if i == len(message):
            return []
        end = i + 2 + int.from_bytes(message[i:i + 2], "big")
        i += 2
        if end > len(message):
            return None
        while i + 4 <= end:
            ext = int.from_bytes(message[i:i + 2], "big")
            size = int.from_bytes(message[i + 2:i + 4], "big")
            data = message[i + 4:i + 4 + size]
            i += 4 + size
            if ext != 16:
                continue
            names, j = [], 2
            while j < len(data):
                n = data[j]
                names.append(data[j + 1:j + 1 + n].decode("ascii", "replace"))
                j += 1 + n
            return names
        return []
    except IndexError:
        return None


def key_authorization_digest(key_authorization: str) -> bytes:
    return hashlib.sha256(key_authorization.encode("ascii")).digest()


def tls_alpn01_certificate(hostname: str, key_authorization: str,
                           now: datetime.datetime | None = None) -> tuple[bytes, bytes]:
    """(certificate PEM, private key PEM) to answer a TLS-ALPN-01 challenge for ``hostname``."""
    now = now or datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ACME challenge")])
    digest = key_authorization_digest(key_authorization)
    ext_value = b"\x04\x20" + digest          # DER OCTET STRING of the 32-byte digest
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .add_extension(x509.UnrecognizedExtension(ACME_IDENTIFIER_OID, ext_value), critical=True)
        .sign(key, hashes.SHA256())
    )
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def certificate_dates(pem: bytes) -> tuple[datetime.datetime, datetime.datetime, str]:
    """(not_before, not_after, serial hex) of the first certificate in a PEM chain; raises
    ValueError when the bytes hold no certificate."""
    cert = x509.load_pem_x509_certificate(pem)
    return cert.not_valid_before_utc, cert.not_valid_after_utc, format(cert.serial_number, "x")


def certificate_names(pem: bytes) -> list[str]:
    cert = x509.load_pem_x509_certificate(pem)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(n) for n in san.get_values_for_type(x509.DNSName)]
