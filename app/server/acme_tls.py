"""The server side of automatic TLS: the TLS context the main listener serves, the HTTP-01
responder on ``tls_letsencrypt_listen`` and the TLS-ALPN-01 certificate selection.

One ``ssl.SSLContext`` serves control (/ts2021), the API and DERP on ``listen_addr``; a new
certificate is loaded into that same context, so the next handshake uses it without a restart
(as SIGHUP does for tls_cert_path). Until the first certificate is there the context has none:
TLS handshakes fail, and nothing is ever served as plain HTTP instead.

TLS-ALPN-01: while a challenge for the hostname is pending, a ClientHello naming the hostname
(SNI) and offering only ALPN "acme-tls/1" (the validator) is answered with a second context
holding the validation certificate; every other client keeps getting the real certificate.
Python's SNI callback cannot see the client's ALPN list, so the ClientHello is read first by
CPython's TLS message hook (``SSLContext._msg_callback``, called before the SNI callback) and
parsed by core.acme.client_hello_alpn. Should that hook ever not run, the SNI alone decides.

HTTP-01: ``GET /.well-known/acme-challenge/<token>`` answers the key authorization; any other
request is redirected to server_url (as headscale's autocert handler does).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any

from prometheus_client import Counter, Gauge

from app.core import acme as core
from app.server.metrics import REGISTRY
from app.service.acme import AcmeError, Certificate, CertManager

log = logging.getLogger("headscale.acme")

CHALLENGE_PREFIX = "/.well-known/acme-challenge/"

CERT_NOT_AFTER = Gauge("headscale_tls_certificate_not_after_seconds",
                       "Expiry (unix time) of the ACME certificate in service", registry=REGISTRY)
RENEWAL_FAILURES = Gauge("headscale_acme_renewal_failures",
                         "Consecutive failed ACME renewals (0 after a success)", registry=REGISTRY)
ORDERS = Counter("headscale_acme_orders_total", "ACME orders by outcome", ["outcome"], registry=REGISTRY)
ALPN_ATTR = "_headscale_alpn"


def _remember_alpn(conn, direction, _version, _content_type, msg_type, data) -> None:
    if direction == "read" and msg_type == ssl._TLSMessageType.CLIENT_HELLO:
        offered = core.client_hello_alpn(bytes(data))
        if offered is not None:   # unparsable: leave it to the SNI alone
            try:
                setattr(conn, ALPN_ATTR, offered)
            except AttributeError:
                pass


def manager_from_config(cfg: Any) -> CertManager:
    return CertManager(
        directory_url=cfg.acme_url, email=cfg.acme_email or "", hostname=cfg.tls_letsencrypt_hostname,
        cache_dir=cfg.tls_letsencrypt_cache_dir, challenge_type=cfg.tls_letsencrypt_challenge_type,
        renew_before=float(cfg.get("tls_letsencrypt_renew_before") or 30 * 86400),
    )


class AcmeTLS:
    def __init__(self, cfg: Any, manager: CertManager | None = None) -> None:
        self.cfg = cfg
        self.manager = manager or manager_from_config(cfg)
        self.manager.on_new_certificate = self._install
        self.manager.on_outcome = self._count
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.set_alpn_protocols(["http/1.1"])
        self.context.sni_callback = self._sni
        if self.manager.challenge_type == "TLS-ALPN-01":
            self.context._msg_callback = _remember_alpn
        self.http01: asyncio.AbstractServer | None = None
        self.task: asyncio.Task | None = None

    # ---- TLS ---------------------------------------------------------------------------

    def _install(self, cert: Certificate) -> None:
        try:
            self.context.load_cert_chain(cert.cert_path, cert.key_path)
        except (OSError, ssl.SSLError) as exc:
            log.error("could not load the new certificate %s (%s); keeping the one in service",
                      cert.cert_path, exc)
            return
        log.info("serving certificate serial %s for %s", cert.serial, self.manager.hostname)
        CERT_NOT_AFTER.set(cert.not_after.timestamp())

    def _count(self, ok: bool) -> None:
        ORDERS.labels("issued" if ok else "failed").inc()
        RENEWAL_FAILURES.set(self.manager.failures)

    def _sni(self, ssl_obj: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext) -> None:
        pending = self.manager.challenges.tls_alpn01.get((server_name or "").lower())
        if pending is None:
            return
        offered = getattr(ssl_obj, ALPN_ATTR, None)
        if offered is not None and core.ACME_TLS_ALPN not in offered:
            return   # an ordinary client naming the hostname: the real certificate
        challenge = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            challenge.load_cert_chain(*pending)
        except (OSError, ssl.SSLError) as exc:
            log.error("TLS-ALPN-01 challenge certificate unusable: %s", exc)
            return
        challenge.set_alpn_protocols([core.ACME_TLS_ALPN])
        ssl_obj.context = challenge
        log.info("answering TLS-ALPN-01 challenge for %s", server_name)

    # ---- HTTP-01 -----------------------------------------------------------------------

    async def _http01(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            line = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
            path = line[1] if len(line) == 3 else ""
            if path.startswith(CHALLENGE_PREFIX):
                answer = self.manager.challenges.http01.get(path[len(CHALLENGE_PREFIX):])
                if answer is None:
                    status, body, extra = "404 Not Found", b"no such challenge\n", ""
                else:
                    status, body, extra = "200 OK", answer.encode(), ""
                    log.info("answered HTTP-01 challenge for %s", self.manager.hostname)
            else:
                status, body = "302 Found", b""
                extra = f"Location: {self.cfg.server_url.rstrip('/')}{path or '/'}\r\n"
            writer.write(f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
                         f"{extra}Connection: close\r\n\r\n".encode() + body)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _start_http01(self) -> None:
        addr = self.cfg.tls_letsencrypt_listen or ":http"
        host, _, port = addr.rpartition(":")
        port_n = 80 if port in ("http", "") else int(port)
        try:
            self.http01 = await asyncio.start_server(self._http01, host.strip("[]") or None, port_n,
                                                     reuse_address=True)
        except OSError as exc:
            raise SystemExit(f"error: tls_letsencrypt_listen {addr}: cannot listen for HTTP-01 "
                             f"challenges: {exc.strerror or exc}") from None

    # ---- life cycle --------------------------------------------------------------------

    async def start(self) -> None:
        """The certificate from the cache or a new order, then the renewal task. Exits the
        process with a clear message when there is no certificate to serve."""
        if self.manager.challenge_type == "HTTP-01":
            await self._start_http01()
        try:
            cert = await self.manager.ensure()
        except AcmeError as exc:
            await self.close()
            raise SystemExit(
                f"error: could not obtain a TLS certificate for {self.manager.hostname} from "
                f"{self.manager.directory_url}: {exc}. Nothing is served without one; fix the cause "
                "(or set tls_cert_path/tls_key_path) and start again") from None
        self._install(cert)
        self.task = asyncio.get_running_loop().create_task(self._run(), name="acme-renewal")

    async def _run(self) -> None:
        try:
            await self.manager.run()
        finally:  # cancelled by serve.stop: the HTTP-01 listener goes with it
            if self.http01 is not None:
                self.http01.close()

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
        if self.http01 is not None:
            self.http01.close()
