"""The log is attack surface (issue 11): refusals aggregate, no tracebacks for connection
errors, no SQL parameters at debug level."""

from __future__ import annotations

import asyncio
import base64
import logging

from app.server import logguard
from app.store import sqllog
from tests.server.conftest import user_and_key


async def _bad_handshake(port: int, source: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    junk = base64.b64encode(b"\x00\x01" + b"x" * 94).decode()
    writer.write(f"POST /ts2021 HTTP/1.1\r\nHost: x\r\nUpgrade: tailscale-control-protocol\r\n"
                 f"Connection: upgrade\r\nX-Tailscale-Handshake: {junk}\r\n\r\n".encode())
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return data


async def test_repeated_refused_handshakes_write_one_line(server, caplog):
    caplog.set_level(logging.INFO)
    port = server.addresses["listen"][1]
    source = "127.0.0.77"   # the aggregation is per source: one no other test uses
    for _ in range(30):
        assert b" 400 " in (await _bad_handshake(port, source)).split(b"\r\n", 1)[0]
    lines = [r for r in caplog.records if r.name == "headscale.noise"]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert "noise handshake refused" in lines[0].getMessage()
    assert source in lines[0].getMessage()


async def test_connection_errors_reported_by_asyncio_are_one_line_without_traceback(caplog):
    caplog.set_level(logging.INFO)
    loop = asyncio.get_running_loop()
    logguard.install_exception_handler(loop)
    try:
        for _ in range(100):
            loop.call_exception_handler({"message": "Fatal read error on socket transport",
                                         "exception": ConnectionResetError(104, "Connection reset by peer")})
    finally:
        loop.set_exception_handler(None)
    lines = [r for r in caplog.records if "Fatal read error" in r.getMessage()]
    assert len(lines) == 1
    assert lines[0].exc_info is None


async def test_debug_level_logs_no_sql_parameters_unless_database_debug(server, caplog):
    caplog.set_level(logging.DEBUG)
    _, full = await user_and_key(server, "carol")
    secret = full[-64:]
    assert not [r for r in caplog.records if r.name.startswith("aiosqlite")]
    assert not [r for r in caplog.records if secret in r.getMessage()]


def test_sql_statement_log_redacts_every_literal():
    sql = ("INSERT INTO pre_auth_keys (prefix, hash, user_id, note) VALUES "
           "('hskey-auth-abc', X'24326224', 7, 'it''s')")
    out = sqllog.redact(sql)
    assert out == "INSERT INTO pre_auth_keys (prefix, hash, user_id, note) VALUES (?, ?, ?, ?)"
    assert sqllog.redact("SELECT * FROM nodes WHERE id = -3 AND t2.x > 1.5e3") == \
        "SELECT * FROM nodes WHERE id = ? AND t2.x > ?"


async def test_database_debug_logs_statements_without_values(tmp_path, caplog):
    from app.config import dev_config
    from app.server.serve import build, stop

    caplog.set_level(logging.DEBUG)
    cfg = dev_config(str(tmp_path), overrides={"listen_addr": "127.0.0.1:0", "metrics_listen_addr": "",
                                               "database.debug": True})
    services = await build(cfg)
    try:
        _, full = await user_and_key(services, "dave")
    finally:
        await stop(services)
    sql = [r.getMessage() for r in caplog.records if r.name == "headscale.sql"]
    assert any("INSERT INTO pre_auth_keys" in m for m in sql), sql[:5]
    prefix, secret = full[len("hskey-auth-"):][:12], full[-64:]
    assert not [m for m in sql if prefix in m or secret in m or "dave" in m]
