"""No silent settings: every key of headscale's config (0.29 example, including its commented-out
keys) set to a value other than its default either changes what the server does or is reported
at start (a warning or a problem naming the key).

Each EFFECT row builds and starts an in-process server twice, with and without the key, and
compares one observation of the running server; the two must differ. REPORTED rows check the
loaded configuration's warnings/problems. ELSEWHERE rows name the test that exercises the key
end to end (OIDC, ACME and PostgreSQL need their real counterparts); the referenced test must
exist. Keys missing from the table fail the test, so a new key cannot stay unclassified.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from app.config import ConfigError, dev_config
from app.config.settings import ACTIVE
from app.server import clientaddr
from app.server.serve import build, start, stop
from tests.test_config import EXAMPLE_KEYS

ROOT = Path(__file__).resolve().parents[2]
DERP_ON = {"derp.server.enabled": True, "derp.server.stun_listen_addr": "127.0.0.1:0"}
REGION_901 = ("regions:\n  901:\n    regionid: 901\n    regioncode: file\n    regionname: From file\n"
              "    nodes:\n      - name: 901a\n        regionid: 901\n        hostname: derp901.example\n")


@dataclass
class Effect:
    value: Any
    observe: Callable[[Any, Path], Any]        # (services, work dir) -> comparable value
    extra: dict[str, Any] = field(default_factory=dict)
    wait: float = 0.0                           # seconds to let the server act before observing
    files: dict[str, str] = field(default_factory=dict)   # written under the work dir first


@dataclass
class Reported:
    value: Any
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class CliEffect:
    """A key the CLI reads: the ApiClient built from the config differs."""

    value: Any
    observe: Callable[[Any], Any]
    extra: dict[str, Any] = field(default_factory=lambda: {"cli.address": "https://hs.test",
                                                           "cli.api_key": "hskey-api-a"})


@dataclass
class Elsewhere:
    test: str                                   # "tests/<path>.py::<function>"
    why: str


def dns(s, d):
    return json.dumps(s.state.settings.dns_config, sort_keys=True, default=str)


def region(s, rid="999"):
    return s.state.derp_map.get("Regions", {}).get(rid)


def pending_after_two_registrations(s, d):
    r = s.registrar
    for i in range(2):
        r._start_interactive(f"mkey:{i:064x}", f"nodekey:{i:064x}", {"Hostname": f"n{i}"}, None)
    return len(r.pending)


async def pending_after_expiry(s, d):
    s.registrar._start_interactive("mkey:" + "1" * 64, "nodekey:" + "1" * 64, {}, None)
    await asyncio.sleep(0.3)
    s.registrar._gc_pending()
    return len(s.registrar.pending)


async def sql_lines_logged(s, d):
    seen: list[str] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = lambda record: seen.append(record.getMessage())
    sql = logging.getLogger("headscale.sql")
    old = sql.level
    sql.addHandler(handler)
    sql.setLevel(logging.DEBUG)
    try:
        await s.state.db.list_users()
    finally:
        sql.removeHandler(handler)
        sql.setLevel(old)
    return bool(seen)


def log_setup(level: str = "info", fmt: str = "text") -> str:
    """What the server's own log set-up (serve.main) does with log.level / log.format."""
    code = ("import logging; from app.server.serve import setup_logging; "
            f"setup_logging({level!r}, {fmt!r}); logging.getLogger('t').warning('w'); "
            "logging.getLogger('t').info('i')")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30,
                          check=False).stdout


TABLE: dict[str, Effect | Reported | Elsewhere] = {
    "server_url": Effect("http://hs.test:8080", lambda s, d: s.state.settings.domain),
    "listen_addr": Effect("127.0.0.2:0", lambda s, d: s.addresses["listen"][0]),
    "metrics_listen_addr": Effect("127.0.0.3:0", lambda s, d: "metrics" in s.addresses),
    "grpc_listen_addr": Reported("0.0.0.0:50443"),
    "grpc_allow_insecure": Reported(True),
    "trusted_proxies": Effect(["10.0.0.0/8"], lambda s, d: clientaddr.client_address(
        "10.1.2.3", {"x-forwarded-for": "198.51.100.7"})),
    "noise.private_key_path": Effect("KEYDIR/noise.key", lambda s, d: (d / "KEYDIR/noise.key").exists()),
    "prefixes.v4": Effect("100.100.0.0/16", lambda s, d: str(s.state.v4.network)),
    "prefixes.v6": Effect("fd7a:115c:a1e0:ab::/64", lambda s, d: str(s.state.v6.network)),
    "prefixes.allocation": Effect("random", lambda s, d: s.state.v4.strategy),
    "derp.server.enabled": Effect(True, lambda s, d: s.derp is not None,
                                  extra={"derp.server.stun_listen_addr": "127.0.0.1:0"}),
    "derp.server.region_id": Effect(900, lambda s, d: sorted(s.state.derp_map["Regions"]), extra=DERP_ON),
    "derp.server.region_code": Effect("xx", lambda s, d: region(s)["RegionCode"], extra=DERP_ON),
    "derp.server.region_name": Effect("X Y", lambda s, d: region(s)["RegionName"], extra=DERP_ON),
    "derp.server.verify_clients": Effect(False, lambda s, d: s.derp._verify is None, extra=DERP_ON),
    "derp.server.stun_listen_addr": Effect("127.0.0.2:0", lambda s, d: s.addresses["stun"][0],
                                           extra=DERP_ON),
    "derp.server.private_key_path": Effect("KEYDIR/derp.key", lambda s, d: (d / "KEYDIR/derp.key").exists(),
                                           extra=DERP_ON),
    "derp.server.automatically_add_embedded_derp_region": Effect(
        False, lambda s, d: region(s) is not None,
        extra={**DERP_ON, "derp.paths": ["WORK/derp.yaml"]}, files={"derp.yaml": REGION_901}),
    "derp.server.ipv4": Effect("192.0.2.1", lambda s, d: region(s)["Nodes"][0].get("IPv4"), extra=DERP_ON),
    "derp.server.ipv6": Effect("2001:db8::1", lambda s, d: region(s)["Nodes"][0].get("IPv6"), extra=DERP_ON),
    "derp.server.stun.enabled": Effect(False, lambda s, d: ("stun" in s.addresses,
                                                            region(s)["Nodes"][0].get("STUNPort")),
                                       extra=DERP_ON),
    "derp.urls": Elsewhere(
        "tests/server/test_tls_derpmap.py::test_derp_map_from_urls_and_paths_with_embedded_region_winning",
        "needs an HTTP server for the map"),
    "derp.paths": Effect(["WORK/derp.yaml"], lambda s, d: region(s, "901") is not None,
                         files={"derp.yaml": REGION_901}),
    "derp.auto_update_enabled": Effect(
        False, lambda s, d: any(t.get_name() == "derp-refresh" for t in s.tasks),
        extra={"derp.paths": ["WORK/derp.yaml"], "derp.auto_update_enabled": True},
        files={"derp.yaml": REGION_901}),
    "derp.update_frequency": Effect(
        "1s", lambda s, d: region(s, "902") is not None, wait=1.6,
        extra={"derp.paths": ["WORK/derp.yaml"], "derp.auto_update_enabled": True},
        files={"derp.yaml": REGION_901}),
    "disable_check_updates": Elsewhere(
        "tests/server/test_config_keys.py::test_disable_check_updates_is_what_the_server_does",
        "this server never checks for updates, which is what true asks for"),
    "node.expiry": Effect("30d", lambda s, d: s.registrar._node_expiry(None, tagged=False) is None),
    "node.ephemeral.inactivity_timeout": Elsewhere(
        "tests/server/test_sessions.py::test_ephemeral_nodes_collected_after_inactivity",
        "the collection needs a disconnected node and the timeout to pass"),
    "node.routes.ha.probe_interval": Effect("0", lambda s, d: s.probes is not None),
    "node.routes.ha.probe_timeout": Effect("3s", lambda s, d: s.probes.core.timeout),
    "database.type": Elsewhere("tests/store/test_postgres.py::test_headscale_0_29_database_opens_and_works",
                               "postgres needs a real PostgreSQL server"),
    "database.debug": Effect(True, sql_lines_logged),
    "database.gorm.prepare_stmt": Reported(False),
    "database.gorm.parameterized_queries": Reported(False),
    "database.gorm.skip_err_record_not_found": Reported(False),
    "database.gorm.slow_threshold": Reported(10),
    "database.sqlite.path": Effect("DB/x.sqlite", lambda s, d: os.path.basename(s.state.db.path)),
    "database.sqlite.write_ahead_log": Reported(False),
    "database.sqlite.wal_autocheckpoint": Reported(500),
    "database.postgres.host": Reported("db.example"),
    "database.postgres.port": Reported(5433),
    "database.postgres.name": Reported("hs"),
    "database.postgres.user": Reported("hs"),
    "database.postgres.pass": Reported("secret"),
    "database.postgres.ssl": Reported("require"),
    "database.postgres.max_open_conns": Reported(20),
    "database.postgres.max_idle_conns": Reported(5),
    "database.postgres.conn_max_idle_time_secs": Reported(60),
    "acme_url": Reported("https://acme.example/directory"),
    "acme_email": Reported("ops@example.com"),
    "tls_letsencrypt_hostname": Elsewhere(
        "tests/server/test_acme_pebble.py::test_certificate_obtained_at_start_and_reused_from_cache",
                                          "needs a real ACME server (pebble)"),
    "tls_letsencrypt_cache_dir": Elsewhere(
        "tests/server/test_acme_pebble.py::test_certificate_obtained_at_start_and_reused_from_cache",
                                           "needs a real ACME server (pebble)"),
    "tls_letsencrypt_challenge_type": Reported("TLS-ALPN-01"),
    "tls_letsencrypt_listen": Reported(":8081"),
    "tls_cert_path": Elsewhere("tests/server/test_tls_derpmap.py::test_tls_listener_and_certificate_reload",
                               "needs a certificate"),
    "tls_key_path": Elsewhere("tests/server/test_tls_derpmap.py::test_tls_listener_and_certificate_reload",
                              "needs a certificate"),
    "log.level": Elsewhere("tests/server/test_config_keys.py::test_log_level_and_format",
                           "logging is set up by the serve command"),
    "log.format": Elsewhere("tests/server/test_config_keys.py::test_log_level_and_format",
                            "logging is set up by the serve command"),
    "policy.mode": Effect("file", lambda s, d: s.policy.mode, extra={}),
    "policy.path": Effect("WORK/acl.hujson", lambda s, d: s.state.policy_source is not None,
                          extra={"policy.mode": "file"}, files={"acl.hujson": '{"acls": []}'}),
    "dns.magic_dns": Effect(False, dns),
    "dns.base_domain": Effect("other.test", dns),
    "dns.override_local_dns": Effect(True, dns, extra={"dns.nameservers.global": ["9.9.9.9"]}),
    "dns.nameservers.global": Effect(["9.9.9.9"], dns),
    "dns.nameservers.split": Effect({"corp.test": ["10.0.0.53"]}, dns),
    "dns.search_domains": Effect(["corp.test"], dns),
    "dns.extra_records": Effect([{"name": "x.tailnet.internal", "type": "A", "value": "100.64.9.9"}], dns),
    "dns.extra_records_path": Effect(
        "WORK/records.json", dns,
        files={"records.json": '[{"name": "y.tailnet.internal", "type": "A", "value": "100.64.9.8"}]'}),
    "unix_socket": Effect("WORK/other.sock", lambda s, d: os.path.basename(s.addresses["unix"])),
    "unix_socket_permission": Effect("0700", lambda s, d: stat.S_IMODE(os.stat(s.addresses["unix"]).st_mode)),
    "oidc.only_start_if_oidc_is_available": Reported(False),
    "oidc.issuer": Elsewhere("tests/oidc/test_oidc_flow.py::test_sign_in_registers_the_waiting_machine",
                             "needs a real OpenID provider"),
    "oidc.client_id": Reported("hs"),
    "oidc.client_secret": Reported("s3cret"),
    "oidc.client_secret_path": Reported("WORK/secret", extra={}),
    "oidc.use_expiry_from_token": Reported(True),
    "oidc.scope": Reported(["openid"]),
    "oidc.email_verified_required": Reported(False),
    "oidc.extra_params": Reported({"domain_hint": "example.com"}),
    "oidc.allowed_domains": Reported(["example.com"]),
    "oidc.allowed_users": Reported(["a@example.com"]),
    "oidc.allowed_groups": Reported(["admins"]),
    "oidc.pkce.enabled": Reported(True),
    "oidc.pkce.method": Reported("plain"),
    "logtail.enabled": Effect(True, lambda s, d: s.state.settings.logtail),
    "taildrop.enabled": Effect(False, lambda s, d: s.state.settings.taildrop),
    "auto_update.enabled": Effect(True, lambda s, d: s.state.settings.auto_update),
    "cli.address": CliEffect("https://other.test", lambda c: c.where),
    "cli.api_key": CliEffect("hskey-api-b", lambda c: c.api_key),
    "cli.timeout": CliEffect("9s", lambda c: c.timeout),
    "cli.insecure": CliEffect(True, lambda c: c._connection()._context.verify_mode),
    "tuning.register_cache_max_entries": Effect(1, pending_after_two_registrations),
    "tuning.register_cache_expiration": Effect("200ms", pending_after_expiry),
    "tuning.node_store_batch_size": Reported(10),
    "tuning.node_store_batch_timeout": Reported("1s"),
    "tuning.batch_change_delay": Effect("1s", lambda s, d: s.batcher.delay),
    "tuning.notifier_send_timeout": Reported("2s"),
    "tuning.node_mapsession_buffered_chan_size": Effect(5, lambda s, d: s.batcher.queue_limit),
    "tuning.batcher_workers": Reported(4),
}


def _resolve(value: Any, work: Path) -> Any:
    if isinstance(value, str):
        for word in ("WORK", "KEYDIR", "DB"):
            if value.startswith(word + "/"):
                return str(work / value) if word != "WORK" else str(work / value[5:])
        return value
    if isinstance(value, list):
        return [_resolve(v, work) for v in value]
    return value


def _overrides(work: Path, extra: dict, key: str | None = None, value: Any = None) -> dict:
    base = {"listen_addr": "127.0.0.1:0", "metrics_listen_addr": "", "unix_socket": str(work / "hs.sock")}
    out = {**base, **{k: _resolve(v, work) for k, v in extra.items()}}
    if key is not None:
        out[key] = _resolve(value, work)
    return out


async def _observe(work: Path, row: Effect, key: str | None) -> Any:
    work.mkdir(parents=True, exist_ok=True)
    for name, text in row.files.items():
        (work / name).write_text(text)
    cfg = dev_config(str(work), overrides=_overrides(work, row.extra, key, row.value))
    services = await build(cfg)
    await start(services)
    try:
        if key == "derp.update_frequency" or (key is None and row.wait):
            (work / "derp.yaml").write_text(REGION_901.replace("901", "902"))
        if row.wait:
            await asyncio.sleep(row.wait)
        got = row.observe(services, work)
        return await got if asyncio.iscoroutine(got) else got
    finally:
        await stop(services)
        clientaddr.configure([])


def test_every_headscale_key_is_classified():
    active = {s.name for s in ACTIVE}
    assert sorted(k for k in EXAMPLE_KEYS if k in active and k not in TABLE) == []


@pytest.mark.parametrize("key", [k for k, r in TABLE.items() if isinstance(r, Effect)])
async def test_key_takes_effect(key, tmp_path):
    if key not in {s.name for s in ACTIVE}:
        pytest.fail(f"{key} is in the table but not in the settings table")
    row = TABLE[key]
    without = await _observe(tmp_path / "default", row, None)
    with_key = await _observe(tmp_path / "set", row, key)
    assert with_key != without, f"{key}={row.value!r} changed nothing observable ({with_key!r})"


@pytest.mark.parametrize("key", [k for k, r in TABLE.items() if isinstance(r, Reported)])
def test_key_is_reported(key, tmp_path):
    row = TABLE[key]
    try:
        cfg = dev_config(str(tmp_path), overrides=_overrides(tmp_path, row.extra, key, row.value))
        said = list(cfg.warnings)
    except ConfigError as e:
        said = e.problems + e.warnings
    mentions = [line for line in said if key in line]
    assert mentions, f"{key}={row.value!r} is neither used nor reported: {said}"
    assert any(word in " ".join(mentions) for word in ("remove", "set ", "use ", "Use ")), mentions


@pytest.mark.parametrize("key", [k for k, r in TABLE.items() if isinstance(r, CliEffect)])
def test_cli_key_takes_effect(key, tmp_path):
    from app.cli.client import ApiClient

    row = TABLE[key]
    without = row.observe(ApiClient.from_config(dev_config(str(tmp_path), overrides=row.extra)))
    cfg = dev_config(str(tmp_path), overrides={**row.extra, key: row.value})
    assert row.observe(ApiClient.from_config(cfg)) != without


@pytest.mark.parametrize("key", [k for k, r in TABLE.items() if isinstance(r, Elsewhere)])
def test_key_is_exercised_elsewhere(key):
    path, _, name = TABLE[key].test.partition("::")
    assert (ROOT / path).exists(), f"{key}: {path} does not exist"
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    assert callable(getattr(module, name, None)), f"{key}: {TABLE[key].test} does not exist"


def test_disable_check_updates_is_what_the_server_does():
    import app

    sources = "\n".join(p.read_text() for p in Path(app.__file__).parent.rglob("*.py"))
    assert "api.github.com" not in sources and "check_updates" not in sources.replace("disable_check_updates", "")


def test_log_level_and_format():
    assert "w" in log_setup("info") and " i" in log_setup("info").replace("INFO t: i", " i")
    assert "INFO" not in log_setup("warn")
    assert log_setup("disabled") == ""
    line = log_setup("info", "json").splitlines()[0]
    assert json.loads(line)["level"] in ("WARNING", "warning", "warn")
