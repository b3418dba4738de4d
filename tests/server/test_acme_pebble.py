"""Automatic TLS against a real ACME server (Debian's pebble, real validation), in process on
loopback: both challenge types, cache reuse without a new order, renewal swapped in without a
restart, and the bad inputs (broken directory, failing challenge, unreadable cache)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import ssl
import threading
import time

import pytest

from app.config import dev_config
from app.core import acme as core_acme
from app.server.serve import build, start, stop
from tests.pebble import Pebble, free_port
from tests.server.conftest import new_client, user_and_key

HOST = "hs.acme.test"
pytestmark = pytest.mark.slow


@pytest.fixture
def pebble(tmp_path):
    ports = {"http": free_port(), "tls": free_port()}
    p = Pebble(tmp_path, http_port=ports["http"], tls_port=ports["tls"])
    p.ports = ports
    p.start()
    yield p
    p.stop()


def acme_config(tmp_path, pebble, challenge="HTTP-01", **extra):
    overrides = {
        "server_url": f"https://{HOST}:{pebble.ports['tls']}",
        "listen_addr": f"127.0.0.1:{pebble.ports['tls']}",
        "metrics_listen_addr": "",
        "acme_url": pebble.directory,
        "acme_email": "admin@example.com",
        "tls_letsencrypt_hostname": HOST,
        "tls_letsencrypt_cache_dir": str(tmp_path / "acme-cache"),
        "tls_letsencrypt_challenge_type": challenge,
        "tls_letsencrypt_listen": f"127.0.0.1:{pebble.ports['http']}",
    }
    overrides.update(extra)
    return dev_config(str(tmp_path / "srv"), overrides=overrides)


async def served_cert(addr, root) -> tuple[str, bytes]:
    ctx = ssl.create_default_context(cafile=str(root))
    reader, writer = await asyncio.open_connection(*addr, ssl=ctx, server_hostname=HOST)
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    body = await reader.read()
    writer.close()
    assert body.startswith(b"HTTP/1.1 200"), body[:100]
    from cryptography import x509
    return format(x509.load_der_x509_certificate(der).serial_number, "x"), der


@pytest.fixture(autouse=True)
def _trust_pebble_directory(pebble, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(pebble.ca))


@pytest.mark.parametrize("challenge", ["HTTP-01", "TLS-ALPN-01"])
async def test_certificate_obtained_at_start_and_reused_from_cache(tmp_path, pebble, challenge, caplog):
    caplog.set_level(logging.INFO, logger="headscale.acme")
    cfg = acme_config(tmp_path, pebble, challenge)
    services = await build(cfg)
    await start(services)
    try:
        root = pebble.root_pem(tmp_path / "root.pem")
        serial, _ = await served_cert(services.addresses["listen"], root)
        assert pebble.count("Added order") == 1
        if challenge == "HTTP-01":
            assert pebble.count("Attempting to validate w/ HTTP") >= 1
            # The challenge port sends everything else to server_url; unknown tokens are 404.
            redirect = await _http_get(pebble.ports["http"], "/register/x?y=1")
            assert redirect.startswith(b"HTTP/1.1 302") and f"Location: {cfg.server_url}/register/x?y=1".encode() in redirect
            assert (await _http_get(pebble.ports["http"], "/.well-known/acme-challenge/nope")).startswith(b"HTTP/1.1 404")
        else:
            assert pebble.count("Attempting to validate w/ HTTP") == 0
            assert any("answering TLS-ALPN-01 challenge" in r.getMessage() for r in caplog.records)
        assert pebble.count("set VALID by completed challenge") == 1
        if challenge == "TLS-ALPN-01":
            await _only_the_validator_gets_a_pending_challenge(services, root, tmp_path)
        # pebble prints the serial with its leading zero hex digits (1 serial in 16 has one)
        issued = re.findall(r"Issued certificate serial 0*([0-9a-f]+)\b", pebble.log_text())
        assert issued.count(serial) == 1, issued
        # Control over the obtained certificate: our client speaks TS2021 through it.
        _, key = await user_and_key(services)
        c = await new_client(services, websocket=False, tls=ssl.create_default_context(cafile=str(root)),
                             server_name=HOST)
        assert (await c.register(key))["MachineAuthorized"] is True
        await c.close()
    finally:
        await stop(services)
    # A restart serves the cached certificate: no new order at the CA.
    services = await build(acme_config(tmp_path, pebble, challenge))
    await start(services)
    try:
        again, _ = await served_cert(services.addresses["listen"], root)
        assert again == serial
        assert pebble.count("Added order") == 1
    finally:
        await stop(services)


async def test_renewal_swaps_the_certificate_without_restart(tmp_path, pebble, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="headscale.acme")
    # A window longer than pebble's 5-year certificates: due at once, renewed every 2 s.
    monkeypatch.setattr(core_acme, "RENEW_MIN_INTERVAL", 2.0)
    services = await build(acme_config(tmp_path, pebble, tls_letsencrypt_renew_before="87600h"))
    await start(services)
    try:
        root = pebble.root_pem(tmp_path / "root.pem")
        addr = services.addresses["listen"]
        first, _ = await served_cert(addr, root)
        for _ in range(60):
            await asyncio.sleep(0.5)
            now, _ = await served_cert(addr, root)
            if now != first:
                break
        assert now != first, "the renewed certificate was not served"
        assert pebble.count("Added order") >= 2
        assert any("serving certificate serial" in r.getMessage() for r in caplog.records)
    finally:
        await stop(services)


async def test_broken_directory_first_start_refuses_clearly(tmp_path, pebble, monkeypatch):
    monkeypatch.setattr("app.service.acme.FIRST_START_BACKOFF", 0.1)
    cfg = acme_config(tmp_path, pebble, acme_url=f"https://127.0.0.1:{pebble.mgmt}/not-a-directory")
    services = await build(cfg)
    with pytest.raises(SystemExit) as exc:
        await start(services)
    await stop(services)
    text = str(exc.value)
    assert "could not obtain a TLS certificate for hs.acme.test" in text
    assert "answered HTTP 404" in text and "check acme_url" in text
    assert "Traceback" not in text


async def test_failing_challenge_refuses_clearly_and_never_serves_plain_http(tmp_path, pebble, monkeypatch,
                                                                             caplog):
    monkeypatch.setattr("app.service.acme.FIRST_START_BACKOFF", 0.1)
    caplog.set_level(logging.INFO, logger="headscale.acme")
    # Nothing answers HTTP-01 where pebble looks (the responder listens elsewhere): validation fails.
    cfg = acme_config(tmp_path, pebble, tls_letsencrypt_listen=f"127.0.0.1:{free_port()}")
    services = await build(cfg)
    # While the server waits for a certificate its port speaks only TLS (and has none to offer):
    # a thread asks it for /health in plain HTTP meanwhile (SystemExit ends the loop, so no task).
    answers: list[bytes] = []
    done = threading.Event()

    def probe() -> None:
        while not done.is_set():
            time.sleep(0.2)
            if "listen" in services.addresses:
                with contextlib.suppress(OSError), socket.create_connection(services.addresses["listen"], 2) as c:
                    c.settimeout(2)
                    c.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                    answers.append(c.recv(100))

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        with pytest.raises(SystemExit) as exc:
            await start(services)
    finally:
        done.set()
        prober.join()
    await stop(services)
    assert answers and not any(a.startswith(b"HTTP/") for a in answers), answers
    assert "validation failed" in str(exc.value)
    assert any("retrying in" in r.getMessage() for r in caplog.records)


async def test_unreadable_cache_is_logged_and_replaced(tmp_path, pebble, caplog):
    caplog.set_level(logging.INFO, logger="headscale.acme")
    cache = tmp_path / "acme-cache"
    cache.mkdir()
    (cache / f"{HOST}.crt").write_text("not a certificate")
    (cache / f"{HOST}.key").write_text("not a key")
    (cache / "account.key").write_text("not a key either")
    (cache / "account.json").write_text("{broken")
    services = await build(acme_config(tmp_path, pebble))
    await start(services)
    try:
        root = pebble.root_pem(tmp_path / "root.pem")
        await served_cert(services.addresses["listen"], root)
        lines = [r.getMessage() for r in caplog.records]
        assert any(f"cached certificate {cache}/{HOST}.crt is unreadable" in line for line in lines)
        assert any("cached ACME account key" in line and "registering a new account" in line for line in lines)
        assert pebble.count("Added order") == 1
    finally:
        await stop(services)


async def test_renewal_failure_keeps_serving_the_current_certificate(tmp_path, pebble, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="headscale.acme")
    monkeypatch.setattr(core_acme, "RENEW_MIN_INTERVAL", 3.0)
    services = await build(acme_config(tmp_path, pebble, tls_letsencrypt_renew_before="87600h"))
    await start(services)
    try:
        root = pebble.root_pem(tmp_path / "root.pem")
        addr = services.addresses["listen"]
        first, _ = await served_cert(addr, root)
        services.acme.manager.directory_url = f"https://127.0.0.1:{pebble.mgmt}/broken"
        for _ in range(40):
            await asyncio.sleep(0.25)
            if any("certificate renewal for hs.acme.test failed" in r.getMessage() for r in caplog.records):
                break
        line = next(r.getMessage() for r in caplog.records if "certificate renewal" in r.getMessage())
        assert f"still serving serial {first}" in line and "retrying in" in line
        assert (await served_cert(addr, root))[0] == first
        from app.server import metrics
        text = metrics.render().decode()
        assert "headscale_acme_renewal_failures 1.0" in text
        assert 'headscale_acme_orders_total{outcome="failed"}' in text
        not_after = next(float(x.split()[-1]) for x in text.splitlines()
                         if x.startswith("headscale_tls_certificate_not_after_seconds "))
        assert not_after > 1.9e9   # pebble's certificates last five years
    finally:
        await stop(services)


async def test_unusable_cache_directory_refuses_clearly(tmp_path, pebble, monkeypatch):
    monkeypatch.setattr("app.service.acme.FIRST_START_BACKOFF", 0.1)
    (tmp_path / "acme-cache").write_text("a file where the cache directory should be")
    services = await build(acme_config(tmp_path, pebble))
    with pytest.raises(SystemExit) as exc:
        await start(services)
    await stop(services)
    assert "tls_letsencrypt_cache_dir" in str(exc.value) and "make it a writable directory" in str(exc.value)


async def test_restart_with_a_due_certificate_and_a_broken_ca_serves_the_cached_one(tmp_path, pebble, caplog):
    caplog.set_level(logging.INFO, logger="headscale.acme")
    services = await build(acme_config(tmp_path, pebble))
    await start(services)
    root = pebble.root_pem(tmp_path / "root.pem")
    try:
        serial, _ = await served_cert(services.addresses["listen"], root)
    finally:
        await stop(services)
    broken = acme_config(tmp_path, pebble, tls_letsencrypt_renew_before="87600h",
                         acme_url=f"https://127.0.0.1:{pebble.mgmt}/broken")
    services = await build(broken)
    await start(services)
    try:
        assert (await served_cert(services.addresses["listen"], root))[0] == serial
        assert any("serving the cached one until it works" in r.getMessage() for r in caplog.records)
    finally:
        await stop(services)


async def _only_the_validator_gets_a_pending_challenge(services, root, tmp_path):
    """While a TLS-ALPN-01 challenge is pending, a client offering only acme-tls/1 gets the
    validation certificate; an ordinary client naming the same host keeps the real one."""
    cert_pem, key_pem = core_acme.tls_alpn01_certificate(HOST, "token.thumbprint")
    (tmp_path / "chal.crt").write_bytes(cert_pem)
    (tmp_path / "chal.key").write_bytes(key_pem)
    pending = services.acme.manager.challenges.tls_alpn01
    pending[HOST] = (str(tmp_path / "chal.crt"), str(tmp_path / "chal.key"))
    try:
        addr = services.addresses["listen"]
        await served_cert(addr, root)     # verified against pebble's root: the real certificate
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        ctx.set_alpn_protocols([core_acme.ACME_TLS_ALPN])
        _, writer = await asyncio.open_connection(*addr, ssl=ctx, server_hostname=HOST)
        obj = writer.get_extra_info("ssl_object")
        assert obj.selected_alpn_protocol() == core_acme.ACME_TLS_ALPN
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import Encoding
        served = x509.load_der_x509_certificate(obj.getpeercert(binary_form=True)).public_bytes(Encoding.PEM)
        assert served == cert_pem
        writer.close()
    finally:
        pending.pop(HOST, None)


async def _http_get(port: int, path: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return data
