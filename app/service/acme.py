"""Automatic TLS certificates with ACME (tls_letsencrypt_* and acme_* keys).

``CertManager`` keeps one certificate for ``tls_letsencrypt_hostname`` in
``tls_letsencrypt_cache_dir``:

    account.key         the ACME account key (RSA 2048, PEM, 0600)
    account.json        the account's registration (its URL at the CA)
    <hostname>.crt      the certificate chain as issued (PEM)
    <hostname>.key      its private key (ECDSA P-256, PEM, 0600)

At start a cached certificate that is not yet due for renewal is used as it is (no order);
otherwise one is ordered before anything is served. Afterwards ``run`` renews it
``renew_before`` seconds before it expires (tls_letsencrypt_renew_before) and hands the new
files to ``on_new_certificate``; a failure is logged with the CA's reason and retried with
doubling backoff (core.acme.backoff), the old certificate staying in service.

The ACME protocol is PyPI ``acme`` (certbot's client library) with ``josepy``; it is blocking
(requests), so every ACME exchange runs in a worker thread. Challenges are published in
``Challenges``, which the server's responders read: HTTP-01 tokens (app/server/acme_tls.py's
listener on tls_letsencrypt_listen) and TLS-ALPN-01 certificates (picked by SNI on the TLS
listener). The CA's certificate is checked against the system CAs, or SSL_CERT_FILE when set.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from app.core import acme as core

log = logging.getLogger("headscale.acme")

FIRST_START_ATTEMPTS = 3
FIRST_START_BACKOFF = 2.0      # seconds before the 2nd attempt at start, doubling
ORDER_TIMEOUT = 90.0           # seconds for validation and issuance of one order


class AcmeError(Exception):
    """An order that did not produce a certificate; ``str`` is one line for the log."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass
class Challenges:
    http01: dict[str, str] = field(default_factory=dict)                # token -> key authorization
    tls_alpn01: dict[str, tuple[str, str]] = field(default_factory=dict)  # hostname -> (cert, key) files


@dataclass
class Certificate:
    cert_path: str
    key_path: str
    not_after: datetime.datetime
    serial: str


class CertManager:
    def __init__(self, *, directory_url: str, email: str, hostname: str, cache_dir: str,
                 challenge_type: str, renew_before: float,
                 on_new_certificate: Callable[[Certificate], None] | None = None) -> None:
        self.directory_url = directory_url
        self.email = email
        self.hostname = hostname
        self.cache_dir = cache_dir
        self.challenge_type = challenge_type.upper()
        self.renew_before = renew_before
        self.on_new_certificate = on_new_certificate
        self.on_outcome: Callable[[bool], None] = lambda ok: None   # after every order (metrics)
        self.challenges = Challenges()
        self.current: Certificate | None = None
        self.orders = 0            # orders placed by this process
        self.failures = 0          # consecutive failed orders (0 after a success)
        self._net = None
        self.retry_in: float | None = None   # seconds before the next attempt after a failure

    # ---- cache ---------------------------------------------------------------------------

    def _path(self, name: str) -> str:
        return os.path.join(self.cache_dir, name)

    @property
    def cert_path(self) -> str:
        return self._path(f"{self.hostname}.crt")

    @property
    def key_path(self) -> str:
        return self._path(f"{self.hostname}.key")

    def load_cached(self) -> Certificate | None:
        """The cached certificate, or None (missing, unreadable or for another name: logged)."""
        if not os.path.exists(self.cert_path):
            return None
        try:
            with open(self.cert_path, "rb") as f:
                pem = f.read()
            with open(self.key_path, "rb"):
                pass
            _, not_after, serial = core.certificate_dates(pem)
            names = core.certificate_names(pem)
        except (OSError, ValueError) as exc:
            log.error("cached certificate %s is unreadable (%s); ordering a new one", self.cert_path, exc)
            return None
        if self.hostname not in names:
            log.warning("cached certificate %s is for %s, not %s; ordering a new one",
                        self.cert_path, ", ".join(names) or "no name", self.hostname)
            return None
        return Certificate(self.cert_path, self.key_path, not_after, serial)

    def _write_private(self, path: str, data: bytes) -> None:
        tmp = path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)

    # ---- the ACME exchange (worker thread) -----------------------------------------------

    def _client(self):
        import josepy as jose
        from acme import client, messages
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        try:
            os.makedirs(self.cache_dir, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise AcmeError(f"tls_letsencrypt_cache_dir {self.cache_dir} is unusable: {exc.strerror or exc}; "
                            "make it a writable directory") from None
        key_file = self._path("account.key")
        account_key = None
        if os.path.exists(key_file):
            try:
                with open(key_file, "rb") as f:
                    account_key = serialization.load_pem_private_key(f.read(), None)
            except (OSError, ValueError, TypeError) as exc:
                log.error("cached ACME account key %s is unreadable (%s); registering a new account",
                          key_file, exc)
                self._discard("account.key", "account.json")
        if not isinstance(account_key, rsa.RSAPrivateKey):
            account_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            self._write_private(key_file, account_key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        jwk = jose.JWKRSA(key=account_key)
        verify: bool | str = os.environ.get("SSL_CERT_FILE") or True
        net = _network_class()(jwk, user_agent="pyheadscale", verify_ssl=verify)
        self._net = net
        directory = client.ClientV2.get_directory(self.directory_url, net)
        acme = client.ClientV2(directory, net)
        reg_file = self._path("account.json")
        if os.path.exists(reg_file):
            try:
                with open(reg_file, encoding="utf-8") as f:
                    net.account = messages.RegistrationResource.json_loads(f.read())
            except (OSError, ValueError, jose.errors.Error) as exc:
                log.error("cached ACME account %s is unreadable (%s); registering again", reg_file, exc)
                net.account = None
        if net.account is None:
            self._register(acme, net)
        return acme, net, jwk

    def _discard(self, *names: str) -> None:
        for name in names:
            try:
                os.replace(self._path(name), self._path(name) + ".unreadable")
            except OSError:
                pass

    def _register(self, acme, net) -> None:
        from acme import messages

        new = messages.NewRegistration.from_data(email=self.email or None, terms_of_service_agreed=True)
        regr = acme.new_account(new)
        net.account = regr
        with open(self._path("account.json"), "w", encoding="utf-8") as f:
            f.write(regr.json_dumps())
        log.info("registered ACME account %s", regr.uri)

    def obtain_blocking(self) -> Certificate:
        """One complete order; raises AcmeError with a readable reason."""
        import requests
        from acme import errors, messages

        try:
            return self._order()
        except AcmeError:
            raise
        except messages.Error as exc:
            raise AcmeError(core.explain(exc.typ or "", exc.detail or ""),
                            retry_after=getattr(self._net, "last_retry_after", None)) from None
        except errors.ValidationError as exc:
            reasons = []
            for authz in exc.failed_authzrs:
                for ch in authz.body.challenges:
                    if ch.error is not None:
                        reasons.append(core.explain(ch.error.typ or "", ch.error.detail or ""))
            raise AcmeError("validation failed: " + ("; ".join(reasons) or "no reason given")) from None
        except errors.TimeoutError:
            raise AcmeError(f"the CA did not finish the order within {ORDER_TIMEOUT:.0f} s") from None
        except errors.Error as exc:
            resp = next((a for a in _flat(exc.args) if isinstance(a, requests.Response)), None)
            if resp is not None:   # not an ACME problem document: a wrong URL or not a CA
                raise AcmeError(f"the ACME server answered HTTP {resp.status_code} for {resp.url}; check "
                                f"acme_url ({self.directory_url}) names an ACME directory") from None
            raise AcmeError(f"ACME client error: {exc}") from None
        except requests.RequestException as exc:   # DNS, refused, TLS, timeouts
            raise AcmeError(f"cannot reach the ACME directory {self.directory_url}: {exc}") from None
        except OSError as exc:
            raise AcmeError(f"cannot write to tls_letsencrypt_cache_dir {self.cache_dir}: "
                            f"{exc.strerror or exc}") from None
        except (ValueError, json.JSONDecodeError) as exc:
            raise AcmeError(f"the ACME directory {self.directory_url} answered something that is not "
                            f"ACME: {exc}") from None
        except Exception as exc:  # any other failure is one log line, never a crash
            log.debug("ACME order failed", exc_info=exc)
            raise AcmeError(f"unexpected ACME failure: {type(exc).__name__}: {exc}") from None

    def _order(self) -> Certificate:
        from acme import challenges, crypto_util, messages
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        acme, net, jwk = self._client()
        key = ec.generate_private_key(ec.SECP256R1())
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        csr = crypto_util.make_csr(key_pem, [self.hostname])
        try:
            order = acme.new_order(csr)
        except messages.Error as exc:
            if exc.typ != core.ACCOUNT_GONE:
                raise
            log.warning("the CA no longer knows the cached ACME account; registering a new one")
            self._register(acme, net)
            order = acme.new_order(csr)
        self.orders += 1
        log.info("ACME order placed for %s (%s)", self.hostname, self.challenge_type)
        published: list[tuple[str, str]] = []
        try:
            for authz in order.authorizations:
                if authz.body.status == messages.STATUS_VALID:
                    continue
                challb = self._pick(authz)
                # acme 5.x knows HTTP-01 but not TLS-ALPN-01 (an UnrecognizedChallenge): both
                # carry the token in the challenge's JSON.
                token = challb.chall.to_partial_json()["token"]
                key_auth = f"{token}.{jose_thumbprint(jwk)}"
                if self.challenge_type == "HTTP-01":
                    self.challenges.http01[token] = key_auth
                    published.append(("http", token))
                else:
                    cert_pem, ckey_pem = core.tls_alpn01_certificate(self.hostname, key_auth)
                    cpath, kpath = self._path("alpn-challenge.crt"), self._path("alpn-challenge.key")
                    self._write_private(cpath, cert_pem)
                    self._write_private(kpath, ckey_pem)
                    self.challenges.tls_alpn01[self.hostname] = (cpath, kpath)
                    published.append(("alpn", self.hostname))
                # RFC 8555 answers every challenge type with "{}": HTTP01Response serialises so.
                acme.answer_challenge(challb, challenges.HTTP01Response(key_authorization=key_auth))
            deadline = datetime.datetime.now() + datetime.timedelta(seconds=ORDER_TIMEOUT)
            order = acme.poll_and_finalize(order, deadline)
        finally:
            for kind, k in published:
                (self.challenges.http01 if kind == "http" else self.challenges.tls_alpn01).pop(k, None)
        chain = order.fullchain_pem.encode()
        self._write_private(self.key_path, key_pem)
        tmp = self.cert_path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(chain)
        os.replace(tmp, self.cert_path)
        _, not_after, serial = core.certificate_dates(chain)
        log.info("obtained certificate for %s from %s (serial %s, valid until %s)",
                 self.hostname, self.directory_url, serial, not_after.isoformat())
        return Certificate(self.cert_path, self.key_path, not_after, serial)

    def _pick(self, authz):
        want = self.challenge_type.lower()
        for challb in authz.body.challenges:
            if challb.chall.to_partial_json().get("type") == want or getattr(challb.chall, "typ", "") == want:
                return challb
        offered = ", ".join(sorted(str(c.chall.to_partial_json().get("type")) for c in authz.body.challenges))
        raise AcmeError(f"the CA offers no {self.challenge_type} challenge for {self.hostname} "
                        f"(offered: {offered}); set tls_letsencrypt_challenge_type to one of them")

    # ---- async side ----------------------------------------------------------------------

    async def obtain(self) -> Certificate:
        try:
            cert = await asyncio.get_running_loop().run_in_executor(None, self.obtain_blocking)
        except AcmeError:
            self.failures += 1
            self.on_outcome(False)
            raise
        self.failures, self.retry_in = 0, None
        self.on_outcome(True)
        return cert

    async def ensure(self) -> Certificate:
        """At start: the cached certificate when it is not due, else a new one (a few attempts).
        Raises AcmeError when there is none to serve."""
        now = datetime.datetime.now(datetime.UTC)
        cached = self.load_cached()
        if cached is not None and core.seconds_until_renewal(cached.not_after, self.renew_before, now) > 0:
            log.info("using cached certificate for %s (serial %s, valid until %s)",
                     self.hostname, cached.serial, cached.not_after.isoformat())
            self.current = cached
            return cached
        last: AcmeError | None = None
        for attempt in range(FIRST_START_ATTEMPTS):
            try:
                self.current = await self.obtain()
                return self.current
            except AcmeError as exc:
                last = exc
                if cached is not None and cached.not_after > now:   # due but valid: serve it, renew later
                    log.error("renewing the certificate for %s failed: %s; serving the cached one "
                              "until it works", self.hostname, exc)
                    self.retry_in = core.backoff(self.failures, retry_after=exc.retry_after)
                    self.current = cached
                    return cached
                wait = core.backoff(attempt + 1, FIRST_START_BACKOFF, 60.0, exc.retry_after)
                if wait > 60.0:   # the CA asks for a long pause (rate limit): say so instead of hanging
                    raise AcmeError(f"{exc}; the CA asks to retry in {wait:.0f} s") from None
                if attempt + 1 < FIRST_START_ATTEMPTS:
                    log.error("could not obtain a certificate for %s: %s; retrying in %.1f s",
                              self.hostname, exc, wait)
                    await asyncio.sleep(wait)
        assert last is not None
        raise last

    async def run(self) -> None:
        """Renew before expiry, forever; failures back off and keep the current certificate."""
        while True:
            assert self.current is not None
            now = datetime.datetime.now(datetime.UTC)
            if self.failures:
                wait = self.retry_in if self.retry_in is not None else core.backoff(self.failures)
            else:
                wait = core.seconds_until_renewal(self.current.not_after, self.renew_before, now)
                wait = max(wait, core.RENEW_MIN_INTERVAL if self.orders else 0.0)
            await asyncio.sleep(wait)
            try:
                cert = await self.obtain()
            except AcmeError as exc:
                retry = self.retry_in = core.backoff(self.failures, retry_after=exc.retry_after)
                log.error("certificate renewal for %s failed: %s; still serving serial %s (valid until "
                          "%s), retrying in %.0f s", self.hostname, exc, self.current.serial,
                          self.current.not_after.isoformat(), retry)
                continue
            self.current = cert
            if self.on_new_certificate is not None:
                self.on_new_certificate(cert)


def _flat(args) -> list:
    out = []
    for a in args:
        out += _flat(a) if isinstance(a, tuple) else [a]
    return out


def jose_thumbprint(jwk) -> str:
    import josepy as jose
    from cryptography.hazmat.primitives import hashes

    return jose.b64encode(jwk.public_key().thumbprint(hash_function=hashes.SHA256)).decode()


def _network_class():
    """acme's ClientNetwork, remembering the Retry-After of the last problem answer (a rate
    limit says when to come back; acme's messages.Error does not carry the headers)."""
    from acme import client, messages

    class _Network(client.ClientNetwork):
        last_retry_after: float | None = None

        def _check_response(self, response, content_type=None):
            try:
                return super()._check_response(response, content_type=content_type)
            except messages.Error:
                self.last_retry_after = core.parse_retry_after(
                    response.headers.get("Retry-After", ""), datetime.datetime.now(datetime.UTC))
                raise

    return _Network
