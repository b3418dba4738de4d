"""app.config: defaults, file/env/override layering, removed keys, validation, durations."""

from __future__ import annotations

import json
import os
import textwrap

import pytest
import yaml

from app.config import (
    SETTINGS,
    Config,
    ConfigError,
    dev_config,
    format_duration,
    load_config,
    parse_duration,
    read_oidc_client_secret,
)
from app.config.settings import ACTIVE, BY_NAME, env_names

# Enough to make the defaults valid (headscale's defaults alone are not: MagicDNS needs a
# base domain and override_local_dns needs a global nameserver).
VALID = {"dns": {"base_domain": "tailnet.example", "nameservers": {"global": ["1.1.1.1"]}}}


def write(tmp_path, data, name="config.yaml"):
    p = tmp_path / name
    if isinstance(data, str):
        p.write_text(textwrap.dedent(data))
    elif name.endswith(".json"):
        p.write_text(json.dumps(data))
    else:
        p.write_text(yaml.safe_dump(data))
    return str(p)


def load(tmp_path, data=None, env=None, **kw):
    path = write(tmp_path, VALID if data is None else data)
    return load_config(path, env or {}, **kw)


def problems_of(tmp_path, data, env=None):
    with pytest.raises(ConfigError) as e:
        load(tmp_path, data, env)
    return e.value.problems


# --- defaults ---------------------------------------------------------------------------------

HEADSCALE_DEFAULTS = {
    "server_url": "http://127.0.0.1:8080",
    "listen_addr": "127.0.0.1:8080",
    "metrics_listen_addr": "127.0.0.1:9090",
    "grpc_listen_addr": ":50443",
    "grpc_allow_insecure": False,
    "trusted_proxies": (),
    "noise.private_key_path": "/var/lib/headscale/noise_private.key",
    "prefixes.v4": "100.64.0.0/10",
    "prefixes.v6": "fd7a:115c:a1e0::/48",
    "prefixes.allocation": "sequential",
    "derp.server.enabled": False,
    "derp.server.region_id": 999,
    "derp.server.region_code": "headscale",
    "derp.server.region_name": "Headscale Embedded DERP",
    "derp.server.verify_clients": True,
    "derp.server.stun_listen_addr": "0.0.0.0:3478",
    "derp.server.private_key_path": "/var/lib/headscale/derp_server_private.key",
    "derp.server.automatically_add_embedded_derp_region": True,
    "derp.server.stun.enabled": True,
    "derp.urls": ("https://controlplane.tailscale.com/derpmap/default",),
    "derp.paths": (),
    "derp.auto_update_enabled": True,
    "derp.update_frequency": 3 * 3600.0,
    "disable_check_updates": False,
    "node.expiry": 0.0,
    "node.ephemeral.inactivity_timeout": 120.0,
    "node.routes.ha.probe_interval": 10.0,
    "node.routes.ha.probe_timeout": 5.0,
    "database.type": "sqlite",
    "database.debug": False,
    "database.gorm.prepare_stmt": True,
    "database.gorm.parameterized_queries": True,
    "database.gorm.skip_err_record_not_found": True,
    "database.gorm.slow_threshold": 1000,
    "database.sqlite.path": "/var/lib/headscale/db.sqlite",
    "database.sqlite.write_ahead_log": True,
    "database.sqlite.wal_autocheckpoint": 1000,
    "database.postgres.ssl": "false",
    "database.postgres.max_open_conns": 10,
    "database.postgres.max_idle_conns": 10,
    "database.postgres.conn_max_idle_time_secs": 3600,
    "acme_url": "https://acme-v02.api.letsencrypt.org/directory",
    "acme_email": "",
    "tls_letsencrypt_hostname": "",
    "tls_letsencrypt_cache_dir": "/var/www/.cache",
    "tls_letsencrypt_challenge_type": "HTTP-01",
    "tls_letsencrypt_listen": ":http",
    "tls_cert_path": "",
    "tls_key_path": "",
    "log.level": "info",
    "log.format": "text",
    "policy.mode": "file",
    "policy.path": "",
    "dns.magic_dns": True,
    "dns.base_domain": "",
    "dns.override_local_dns": True,
    "dns.nameservers.global": (),
    "dns.search_domains": (),
    "dns.extra_records": (),
    "dns.extra_records_path": "",
    "unix_socket": "/var/run/headscale/headscale.sock",
    "unix_socket_permission": 0o770,
    "oidc.only_start_if_oidc_is_available": True,
    "oidc.use_expiry_from_token": False,
    "oidc.scope": ("openid", "profile", "email"),
    "oidc.email_verified_required": True,
    "oidc.pkce.enabled": False,
    "oidc.pkce.method": "S256",
    "logtail.enabled": False,
    "taildrop.enabled": True,
    "auto_update.enabled": False,
    "cli.address": "",
    "cli.api_key": "",
    "cli.timeout": 5.0,
    "cli.insecure": False,
    "tuning.register_cache_max_entries": 1024,
    "tuning.register_cache_expiration": 900.0,
    "tuning.node_store_batch_size": 100,
    "tuning.node_store_batch_timeout": 0.5,
    "tuning.notifier_send_timeout": 0.8,
    "tuning.node_mapsession_buffered_chan_size": 30,
}


def test_defaults_match_headscale():
    cfg = load_config(None, {}, search_dirs=[], validate=False)
    assert cfg.source_path is None
    for key, want in HEADSCALE_DEFAULTS.items():
        assert cfg.get(key) == want, key
    assert dict(cfg.dns.nameservers.split) == {}
    assert dict(cfg.oidc.extra_params) == {}


def test_batch_change_delay_is_deliberately_faster_than_headscale():
    cfg = load_config(None, {}, search_dirs=[], validate=False)
    assert cfg.tuning.batch_change_delay == 0.1
    assert "800ms" in BY_NAME["tuning.batch_change_delay"].help


def test_headscale_defaults_alone_report_the_dns_problems_headscale_reports():
    with pytest.raises(ConfigError) as e:
        load_config(None, {}, search_dirs=[])
    assert e.value.problems == [
        "dns.base_domain: must be set when dns.magic_dns is true",
        "dns.nameservers.global: must list at least one nameserver when dns.override_local_dns is true",
    ]


EXAMPLE_KEYS = ["server_url", "listen_addr", "metrics_listen_addr", "grpc_listen_addr", "grpc_allow_insecure", "trusted_proxies", "noise.private_key_path", "prefixes.v4", "prefixes.v6", "prefixes.allocation", "derp.server.enabled", "derp.server.region_id", "derp.server.region_code", "derp.server.region_name", "derp.server.verify_clients", "derp.server.stun_listen_addr", "derp.server.private_key_path", "derp.server.automatically_add_embedded_derp_region", "derp.server.ipv4", "derp.server.ipv6", "derp.urls", "derp.paths", "derp.auto_update_enabled", "derp.update_frequency", "disable_check_updates", "node.expiry", "node.ephemeral.inactivity_timeout", "node.routes.ha.probe_interval", "node.routes.ha.probe_timeout", "database.type", "database.debug", "database.gorm.prepare_stmt", "database.gorm.parameterized_queries", "database.gorm.skip_err_record_not_found", "database.gorm.slow_threshold", "database.sqlite.path", "database.sqlite.write_ahead_log", "database.sqlite.wal_autocheckpoint", "database.postgres.host", "database.postgres.port", "database.postgres.name", "database.postgres.user", "database.postgres.pass", "database.postgres.max_open_conns", "database.postgres.max_idle_conns", "database.postgres.conn_max_idle_time_secs", "database.postgres.ssl", "acme_url", "acme_email", "tls_letsencrypt_hostname", "tls_letsencrypt_cache_dir", "tls_letsencrypt_challenge_type", "tls_letsencrypt_listen", "tls_cert_path", "tls_key_path", "log.level", "log.format", "policy.mode", "policy.path", "dns.magic_dns", "dns.base_domain", "dns.override_local_dns", "dns.nameservers.global", "dns.nameservers.split", "dns.search_domains", "dns.extra_records", "dns.extra_records_path", "unix_socket", "unix_socket_permission", "oidc.only_start_if_oidc_is_available", "oidc.issuer", "oidc.client_id", "oidc.client_secret", "oidc.client_secret_path", "oidc.use_expiry_from_token", "oidc.scope", "oidc.email_verified_required", "oidc.extra_params", "oidc.allowed_domains", "oidc.allowed_users", "oidc.allowed_groups", "oidc.pkce.enabled", "oidc.pkce.method", "logtail.enabled", "taildrop.enabled", "auto_update.enabled", "cli.address", "cli.api_key", "cli.timeout", "cli.insecure", "tuning.register_cache_max_entries", "tuning.node_store_batch_size", "tuning.node_store_batch_timeout", "tuning.batch_change_delay", "tuning.notifier_send_timeout", "tuning.node_mapsession_buffered_chan_size", "tuning.batcher_workers", "tuning.register_cache_expiration"]


def test_every_headscale_key_is_in_the_table():
    active = {s.name for s in ACTIVE}
    assert [k for k in EXAMPLE_KEYS if k not in active] == []


def test_env_names_are_unique():
    names = [s.env_name for s in SETTINGS if s.env]
    assert len(names) == len(set(names))
    assert env_names()["HEADSCALE_DNS_BASE_DOMAIN"].name == "dns.base_domain"


# --- Config object ----------------------------------------------------------------------------


def test_attribute_access_mirrors_yaml(tmp_path):
    cfg = load(tmp_path)
    assert isinstance(cfg, Config)
    assert cfg.server_url == "http://127.0.0.1:8080"
    assert cfg.noise.private_key_path == "/var/lib/headscale/noise_private.key"
    assert cfg.prefixes.v4 == "100.64.0.0/10"
    assert cfg.derp.server.region_id == 999
    assert cfg.database.sqlite.path == "/var/lib/headscale/db.sqlite"
    assert cfg.dns.nameservers.global_ == ("1.1.1.1",)
    assert getattr(cfg.dns.nameservers, "global") == ("1.1.1.1",)
    assert cfg.database.postgres.pass_ == ""
    assert cfg.get("dns.nameservers.global") == ("1.1.1.1",)
    assert cfg.get("dns").base_domain == "tailnet.example"
    assert cfg.get("nope", None) is None
    with pytest.raises(KeyError):
        cfg.get("dns.nope")
    with pytest.raises(AttributeError, match="dns.nope"):
        cfg.dns.nope  # noqa: B018


def test_config_is_frozen(tmp_path):
    cfg = load(tmp_path)
    with pytest.raises(AttributeError):
        cfg.server_url = "x"
    with pytest.raises(AttributeError):
        cfg.dns.base_domain = "x"
    with pytest.raises(TypeError):
        cfg.dns.nameservers.split["x"] = ("1.1.1.1",)
    assert isinstance(cfg.derp.urls, tuple)


def test_as_dict_masks_secrets_and_round_trips(tmp_path):
    data = {**VALID, "cli": {"api_key": "hskey-api-abc-secret"}, "oidc": {"client_secret": "s3cr3t"},
            "node": {"ephemeral": {"inactivity_timeout": "1h30m"}}}
    cfg = load(tmp_path, data)
    masked = cfg.as_dict()
    assert masked["cli"]["api_key"] == "***"
    assert masked["oidc"]["client_secret"] == "***"
    assert masked["oidc"]["client_id"] == ""  # empty values are not masked
    assert "s3cr3t" not in yaml.safe_dump(masked)
    assert masked["node"]["ephemeral"]["inactivity_timeout"] == "1h30m"
    assert masked["unix_socket_permission"] == "0770"
    again = load(tmp_path, cfg.as_dict(masked=False))
    assert again == cfg
    assert again.as_dict(masked=False) == cfg.as_dict(masked=False)


# --- files ------------------------------------------------------------------------------------


def test_yaml_file_values_and_relative_paths(tmp_path):
    cfg = load(tmp_path, """
        server_url: https://hs.example.com
        listen_addr: 0.0.0.0:8080
        noise:
          private_key_path: ./keys/noise.key
        database:
          sqlite:
            path: /abs/db.sqlite
        dns:
          base_domain: tailnet.example
          nameservers:
            global: [1.1.1.1, "https://dns.nextdns.io/abc123"]
            split:
              corp.example: [10.0.0.53]
          extra_records:
            - {name: grafana.tailnet.example, type: A, value: 100.64.0.3}
        unix_socket_permission: 0750
    """)
    assert cfg.source_path == str(tmp_path / "config.yaml")
    assert cfg.noise.private_key_path == str(tmp_path / "keys/noise.key")
    assert cfg.database.sqlite.path == "/abs/db.sqlite"
    assert cfg.dns.nameservers.split["corp.example"] == ("10.0.0.53",)
    assert cfg.dns.extra_records[0]["value"] == "100.64.0.3"
    assert cfg.unix_socket_permission == 0o750


def test_keys_are_case_insensitive_like_viper(tmp_path):
    cfg = load(tmp_path, {"Server_URL": "https://hs.example.com", "DNS": {"Base_Domain": "t.example",
                                                                         "override_local_dns": False}})
    assert cfg.server_url == "https://hs.example.com" and cfg.dns.base_domain == "t.example"


def test_json_file(tmp_path):
    path = write(tmp_path, {**VALID, "log": {"level": "debug"}}, name="config.json")
    assert load_config(path, {}).log.level == "debug"


def test_search_order(tmp_path):
    for d in ("etc", "home", "cwd"):
        (tmp_path / d).mkdir()
    write(tmp_path / "home", {**VALID, "log": {"level": "debug"}})
    write(tmp_path / "cwd", {**VALID, "log": {"level": "warn"}})
    dirs = [str(tmp_path / d) for d in ("etc", "home", "cwd")]
    assert load_config(None, {}, search_dirs=dirs).log.level == "debug"
    write(tmp_path / "etc", {**VALID, "log": {"level": "error"}}, name="config.json")
    assert load_config(None, {}, search_dirs=dirs).log.level == "error"
    explicit = write(tmp_path, {**VALID, "log": {"level": "trace"}}, name="other.yaml")
    assert load_config(None, {"HEADSCALE_CONFIG": explicit}, search_dirs=dirs).log.level == "trace"


def test_missing_explicit_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(str(tmp_path / "nope.yaml"), {})
    with pytest.raises(ConfigError, match="not found"):
        load_config(None, {"HEADSCALE_CONFIG": str(tmp_path / "nope.yaml")})


def test_missing_file_in_search_path_means_defaults(tmp_path):
    cfg = load_config(None, {"HEADSCALE_DNS_BASE_DOMAIN": "x.example",
                             "HEADSCALE_DNS_OVERRIDE_LOCAL_DNS": "false"}, search_dirs=[str(tmp_path)])
    assert cfg.source_path is None and cfg.dns.base_domain == "x.example"


def test_bad_yaml_is_one_clear_problem(tmp_path):
    path = write(tmp_path, "server_url: [unclosed\n")
    with pytest.raises(ConfigError) as e:
        load_config(path, {})
    assert len(e.value.problems) == 1 and "invalid YAML at line" in e.value.problems[0]
    path = write(tmp_path, "- a list\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(path, {})


def test_empty_file_and_empty_sections(tmp_path):
    cfg = load_config(write(tmp_path, "oidc:\ndns:\n  base_domain: a.example\n  override_local_dns: false\n"), {})
    assert cfg.oidc.issuer == "" and cfg.dns.base_domain == "a.example"


# --- env and overrides ------------------------------------------------------------------------


def test_env_overrides_file(tmp_path):
    env = {
        "HEADSCALE_DNS_BASE_DOMAIN": "from-env.example",
        "HEADSCALE_DNS_NAMESERVERS_GLOBAL": "1.1.1.1, 1.0.0.1 2606:4700:4700::1111",
        "HEADSCALE_DERP_SERVER_ENABLED": "true",
        "HEADSCALE_DERP_SERVER_REGION_ID": "900",
        "HEADSCALE_NODE_EPHEMERAL_INACTIVITY_TIMEOUT": "30m",
        "HEADSCALE_DNS_NAMESERVERS_SPLIT": '{"corp.example": ["10.0.0.53"]}',
        "HEADSCALE_OIDC_SCOPE": "[openid, email]",
        "HEADSCALE_LOG_LEVEL": "",  # empty: ignored, like viper
        "HEADSCALE_SOMETHING_ELSE": "ignored",
    }
    cfg = load(tmp_path, {**VALID, "log": {"level": "debug"}}, env)
    assert cfg.dns.base_domain == "from-env.example"
    assert cfg.dns.nameservers.global_ == ("1.1.1.1", "1.0.0.1", "2606:4700:4700::1111")
    assert cfg.derp.server.enabled is True and cfg.derp.server.region_id == 900
    assert cfg.node.ephemeral.inactivity_timeout == 1800.0
    assert cfg.dns.nameservers.split["corp.example"] == ("10.0.0.53",)
    assert cfg.oidc.scope == ("openid", "email")
    assert cfg.log.level == "debug"


def test_env_problem_names_the_variable(tmp_path):
    problems = problems_of(tmp_path, VALID, {"HEADSCALE_DERP_SERVER_REGION_ID": "abc"})
    assert problems == ["derp.server.region_id (from HEADSCALE_DERP_SERVER_REGION_ID): expected an integer"]


def test_overrides_win_over_env_and_accept_dotted_or_nested(tmp_path):
    env = {"HEADSCALE_LOG_LEVEL": "warn"}
    cfg = load(tmp_path, env=env, overrides={"log.level": "error", "dns": {"magic_dns": False}})
    assert cfg.log.level == "error" and cfg.dns.magic_dns is False
    with pytest.raises(ConfigError, match="override nope: unknown"):
        load(tmp_path, overrides={"nope": 1})


# --- removed, renamed and unknown keys --------------------------------------------------------


@pytest.mark.parametrize("data, expect", [
    ({"randomize_client_port": True}, "randomizeClientPort"),
    ({"oidc": {"expiry": "180d"}}, "Use node.expiry instead"),
    ({"oidc": {"strip_email_domain": True}}, "oidc.strip_email_domain: this key has been removed"),
    ({"oidc": {"map_legacy_users": True}}, "oidc.map_legacy_users: this key has been removed"),
    ({"dns": {"use_username_in_magic_dns": True}}, "dns.use_username_in_magic_dns: this key has been removed"),
])
def test_removed_keys_fail_naming_the_replacement(tmp_path, data, expect):
    merged = {**data, "dns": {**VALID["dns"], **data.get("dns", {})}}
    problems = problems_of(tmp_path, merged)
    assert any(p.startswith(next(iter(_flat(data)))) and expect in p for p in problems), problems


def _flat(d, prefix=""):
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and key not in ("dns_config.restricted_nameservers",):
            yield from _flat(v, key + ".")
        else:
            yield key


def test_removed_key_from_env_fails_too(tmp_path):
    problems = problems_of(tmp_path, VALID, {"HEADSCALE_OIDC_EXPIRY": "180d"})
    assert problems == ["oidc.expiry (from HEADSCALE_OIDC_EXPIRY): this key has been removed. Use node.expiry instead."]


# The headscale 0.22-era keys: (old data, new key, expected value of the new key)
RENAMED_CASES = [
    ({"dns_config": {"magic_dns": False}}, "dns.magic_dns", False),
    ({"dns_config": {"base_domain": "old.example"}}, "dns.base_domain", "old.example"),
    ({"dns_config": {"override_local_dns": False}}, "dns.override_local_dns", False),
    ({"dns_config": {"nameservers": ["9.9.9.9"]}}, "dns.nameservers.global", ("9.9.9.9",)),
    ({"dns_config": {"restricted_nameservers": {"a.example": ["1.1.1.1"]}}}, "dns.nameservers.split",
     {"a.example": ("1.1.1.1",)}),
    ({"dns_config": {"domains": ["a.example"]}}, "dns.search_domains", ("a.example",)),
    ({"dns_config": {"extra_records": [{"name": "g.tailnet.example", "type": "A", "value": "100.64.0.3"}]}},
     "dns.extra_records", ({"name": "g.tailnet.example", "type": "A", "value": "100.64.0.3"},)),
    ({"acl_policy_path": ""}, "policy.path", ""),
    ({"db_type": "sqlite3"}, "database.type", "sqlite3"),
    ({"db_path": "/srv/hs/db.sqlite"}, "database.sqlite.path", "/srv/hs/db.sqlite"),
    ({"ephemeral_node_inactivity_timeout": "30m"}, "node.ephemeral.inactivity_timeout", 1800.0),
    ({"log_level": "debug"}, "log.level", "debug"),
    ({"ip_prefixes": ["fd7a:115c:a1e0::/48", "100.64.0.0/10"]}, "prefixes.v4", "100.64.0.0/10"),
]


@pytest.mark.parametrize("data, new, want", RENAMED_CASES)
def test_old_keys_map_onto_new_keys_with_one_warning(tmp_path, data, new, want):
    base = json.loads(json.dumps(VALID))
    if new == "dns.base_domain":
        del base["dns"]["base_domain"]
    if new == "dns.nameservers.global":
        del base["dns"]["nameservers"]
    cfg = load(tmp_path, {**base, **data})
    got = cfg.get(new)
    got = {k: tuple(v) for k, v in got.items()} if hasattr(got, "items") and not isinstance(want, tuple) else got
    if isinstance(want, tuple) and want and isinstance(want[0], dict):
        got = tuple(dict(r) for r in got)
    assert got == want
    old = next(iter(_flat(data)))
    mention = [w for w in cfg.warnings if w.startswith(old)]
    assert len(mention) == 1 and new in mention[0], cfg.warnings


@pytest.mark.parametrize("data, new, want", [c for c in RENAMED_CASES if c[1] != "prefixes.v4"])
def test_old_key_conflicting_with_new_key_is_an_error(tmp_path, data, new, want):
    other = {"dns.magic_dns": True, "dns.base_domain": "new.example", "dns.override_local_dns": True,
             "dns.nameservers.global": ["8.8.8.8"], "dns.nameservers.split": {"b.example": ["8.8.8.8"]},
             "dns.search_domains": ["b.example"], "dns.extra_records": [],
             "policy.path": "x.hujson", "database.type": "sqlite", "database.sqlite.path": "/x.sqlite",
             "node.ephemeral.inactivity_timeout": "5m", "log.level": "warn"}[new]
    with pytest.raises(ConfigError) as e:
        load(tmp_path, {**VALID, **data}, overrides={new: other}, validate=True)
    problems = e.value.problems
    old = next(iter(_flat(data)))
    assert any(p.startswith(old) and f"keep only {new}" in p for p in problems), problems


def test_old_key_with_the_same_value_as_the_new_key_only_warns(tmp_path):
    cfg = load(tmp_path, {**VALID, "dns_config": {"base_domain": "tailnet.example"}})
    assert cfg.dns.base_domain == "tailnet.example"
    assert any("dns_config.base_domain" in w and "remove dns_config.base_domain" in w for w in cfg.warnings)


def test_ephemeral_node_inactivity_timeout_warns_and_maps(tmp_path):
    cfg = load(tmp_path, {**VALID, "ephemeral_node_inactivity_timeout": "30m"})
    assert cfg.node.ephemeral.inactivity_timeout == 1800.0
    assert any("node.ephemeral.inactivity_timeout" in w for w in cfg.warnings)
    cfg = load(tmp_path, VALID, {"HEADSCALE_EPHEMERAL_NODE_INACTIVITY_TIMEOUT": "10m"})
    assert cfg.node.ephemeral.inactivity_timeout == 600.0
    assert problems_of(tmp_path, {**VALID, "ephemeral_node_inactivity_timeout": "60s"}) == [
        "node.ephemeral.inactivity_timeout (from ephemeral_node_inactivity_timeout): is set too low, "
        + "must be more than 65s"
    ]


def test_ip_prefixes_split_by_family(tmp_path):
    cfg = load(tmp_path, {**VALID, "ip_prefixes": ["100.64.0.0/10"]})
    assert cfg.prefixes.v4 == "100.64.0.0/10" and cfg.prefixes.v6 == ""
    problems = problems_of(tmp_path, {**VALID, "ip_prefixes": ["100.64.0.0/10", "100.64.0.0/11"]})
    assert problems == ["ip_prefixes: more than one IPv4 prefix; only one per family is supported (set prefixes.v4)."]


def test_keys_without_a_successor_warn_and_say_why(tmp_path):
    cfg = load(tmp_path, {**VALID, "node_update_check_interval": "10s", "private_key_path": "/x/private.key",
                          "randomize_client_port": False})
    text = "\n".join(cfg.warnings)
    assert "node_update_check_interval is no longer read" in text and "tuning.batch_change_delay" in text
    assert "private_key_path is no longer read" in text and "noise.private_key_path" in text
    assert "randomize_client_port is no longer read" in text and "randomizeClientPort" in text


def test_old_renamed_keys_and_unknown_keys_warn(tmp_path):
    cfg = load(tmp_path, {**VALID, "ip_prefixes": ["100.64.0.0/10"], "log_level": "debug",
                          "listen_adr": "0.0.0.0:1", "dns": {**VALID["dns"], "magic": 1}})
    text = "\n".join(cfg.warnings)
    assert "ip_prefixes was renamed to prefixes.v4, prefixes.v6" in text
    assert "log_level was renamed to log.level" in text and cfg.log.level == "debug"
    assert "unknown configuration key 'listen_adr' is ignored (did you mean listen_addr?)" in text
    assert "unknown configuration key 'dns.magic'" in text


# --- validation -------------------------------------------------------------------------------


def test_every_problem_is_listed_at_once(tmp_path):
    bad = {
        "server_url": "ftp://hs.example.com",
        "listen_addr": "nonsense",
        "trusted_proxies": ["0.0.0.0/0"],
        "prefixes": {"v4": "10.0.0.0/8/8", "allocation": "clever"},
        "derp": {"server": {"enabled": True, "stun_listen_addr": ""}, "urls": ["file:///x"],
                 "update_frequency": "soon"},
        "node": {"ephemeral": {"inactivity_timeout": "30s"},
                 "routes": {"ha": {"probe_interval": "1s", "probe_timeout": "5s"}}},
        "database": {"type": "postgres", "sqlite": {"wal_autocheckpoint": "many"}},
        "tls_letsencrypt_hostname": "hs.example.com",
        "tls_cert_path": "/c.pem",
        "tls_letsencrypt_challenge_type": "DNS-01",
        "log": {"level": "loud", "format": "xml"},
        "policy": {"mode": "s3"},
        "dns": {"base_domain": "", "magic_dns": True, "override_local_dns": True,
                "extra_records": [{"name": "a", "type": "CNAME", "value": "b"}], "extra_records_path": "/x.json"},
        "unix_socket_permission": "rwx",
        "oidc": {"issuer": "https://idp.example", "client_secret": "x", "client_secret_path": "/nope",
                 "pkce": {"method": "S512"}},
        "cli": {"timeout": "-1s"},
        "tuning": {"node_store_batch_size": 0},
    }
    problems = problems_of(tmp_path, bad)
    expected_fragments = [
        "server_url: must start with http:// or https://",
        "listen_addr: expected host:port",
        "trusted_proxies: item 0 ('0.0.0.0/0'): 0.0.0.0/0 and ::/0 are not allowed",
        "prefixes.v4: is not a valid IPv4 prefix",
        "prefixes.allocation: must be one of sequential, random (got 'clever')",
        "derp.urls: item 0 must start with http:// or https://",
        "derp.update_frequency: expected a duration",
        "node.ephemeral.inactivity_timeout: is set too low, must be more than 65s",
        "database.postgres.host: must be set when database.type is postgres",
        "database.sqlite.wal_autocheckpoint: expected an integer",
        "tls_letsencrypt_challenge_type: must be one of HTTP-01, TLS-ALPN-01",
        "log.level: must be one of",
        "log.format: must be one of text, json",
        "policy.mode: must be one of file, database",
        "unix_socket_permission: expected an octal file mode",
        "oidc.pkce.method: must be one of plain, S256",
        "cli.timeout: must be greater than zero",
        "tuning.node_store_batch_size: must be greater than zero",
        "dns.base_domain: must be set when dns.magic_dns is true",
        "dns.nameservers.global: must list at least one nameserver",
        "dns.extra_records: set either dns.extra_records or dns.extra_records_path, not both",
        "dns.extra_records[0]: type must be A or AAAA",
        "tls_cert_path, tls_key_path: set both or neither",
        "tls_letsencrypt_hostname: set either tls_letsencrypt_hostname or tls_cert_path/tls_key_path",
        "node.routes.ha.probe_interval: must be at least 2s",
        "node.routes.ha.probe_timeout: must be less than node.routes.ha.probe_interval",
        "derp.server.stun_listen_addr: must be set when derp.server.enabled is true",
        "oidc.client_secret, oidc.client_secret_path: set only one of them",
        "oidc.client_id: must be set when oidc.issuer is set",
        "oidc.client_secret_path: file '/nope' not found",
    ]
    missing = [f for f in expected_fragments if not any(f in p for p in problems)]
    assert missing == [], "\n".join(problems)
    assert all("\n" not in p for p in problems)


@pytest.mark.parametrize("server_url, base_domain, ok", [
    ("https://hs.example.com", "tailnet.example.com", True),
    ("https://hs.example.com", "example.com", False),  # inside
    ("https://example.com:443", "example.com", False),  # same host (port ignored)
    ("https://a.b.example.com", "b.example.com", False),
    ("https://myexample.com", "example.com", True),  # a suffix that is not a subdomain
    ("https://example.com", "hs.example.com", True),  # base_domain inside the server's domain: fine
])
def test_server_url_host_vs_base_domain(tmp_path, server_url, base_domain, ok):
    data = {"server_url": server_url, "dns": {**VALID["dns"], "base_domain": base_domain}}
    if ok:
        load(tmp_path, data)
    else:
        problems = problems_of(tmp_path, data)
        assert len(problems) == 1 and problems[0].startswith("server_url:") and "dns.base_domain" in problems[0]


def test_ephemeral_timeout_must_exceed_65s(tmp_path):
    assert load(tmp_path, {**VALID, "node": {"ephemeral": {"inactivity_timeout": "66s"}}})
    assert problems_of(tmp_path, {**VALID, "node": {"ephemeral": {"inactivity_timeout": "65s"}}}) == [
        "node.ephemeral.inactivity_timeout: is set too low, must be more than 65s"]


def test_override_local_dns_without_global_nameservers(tmp_path):
    data = {"dns": {"base_domain": "t.example", "override_local_dns": True}}
    assert problems_of(tmp_path, data) == [
        "dns.nameservers.global: must list at least one nameserver when dns.override_local_dns is true"]
    load(tmp_path, {"dns": {"base_domain": "t.example", "override_local_dns": False}})


def test_tls_pairs(tmp_path):
    load(tmp_path, {**VALID, "tls_cert_path": "/c", "tls_key_path": "/k"})
    assert problems_of(tmp_path, {**VALID, "tls_key_path": "/k"}) == ["tls_cert_path, tls_key_path: set both or neither"]


def test_prefixes(tmp_path):
    cfg = load(tmp_path, {**VALID, "prefixes": {"v4": "100.64.0.0/24", "v6": ""}})
    assert cfg.prefixes.v6 == "" and cfg.warnings == ()
    cfg = load(tmp_path, {**VALID, "prefixes": {"v4": "10.0.0.0/8"}})
    assert any("outside 100.64.0.0/10" in w for w in cfg.warnings)
    assert problems_of(tmp_path, {**VALID, "prefixes": {"v4": "", "v6": ""}}) == [
        "prefixes: no IPv4 or IPv6 prefix configured, at least one is required"]
    assert problems_of(tmp_path, {**VALID, "prefixes": {"v4": "fd7a:115c:a1e0::/48"}}) == [
        "prefixes.v4: is not a valid IPv4 prefix (CIDR)"]


def test_unix_socket_permission_forms(tmp_path):
    for raw, want in [("0770", 0o770), ("770", 0o770), ("0o750", 0o750), ("0600", 0o600)]:
        assert load(tmp_path, {**VALID, "unix_socket_permission": raw}).unix_socket_permission == want
    assert load(tmp_path, "unix_socket_permission: 0770\n" + yaml.safe_dump(VALID)).unix_socket_permission == 0o770
    assert load(tmp_path, "unix_socket_permission: 770\n" + yaml.safe_dump(VALID)).unix_socket_permission == 0o770
    assert load(tmp_path, VALID, {"HEADSCALE_UNIX_SOCKET_PERMISSION": "0700"}).unix_socket_permission == 0o700


def test_unix_socket_path_length(tmp_path):
    problems = problems_of(tmp_path, {**VALID, "unix_socket": "/" + "x" * 120})
    assert problems == ["unix_socket: path is longer than 107 bytes, the limit for unix sockets"]


def test_secrets_never_appear_in_problems(tmp_path):
    secret = "hskey-api-SECRETSECRET"
    problems = problems_of(tmp_path, {**VALID, "cli": {"api_key": [secret], "timeout": "0s"}})
    assert problems and all(secret not in p for p in problems)


def test_policy_file_must_exist_in_file_mode(tmp_path):
    assert problems_of(tmp_path, {**VALID, "policy": {"path": "acl.hujson"}}) == [
        f"policy.path: file {str(tmp_path / 'acl.hujson')!r} not found"]
    (tmp_path / "acl.hujson").write_text("{}")
    assert load(tmp_path, {**VALID, "policy": {"path": "acl.hujson"}}).policy.path == str(tmp_path / "acl.hujson")
    load(tmp_path, {**VALID, "policy": {"mode": "database", "path": "missing.hujson"}})


def test_validate_false_keeps_problems_and_falls_back(tmp_path):
    cfg = load(tmp_path, {**VALID, "cli": {"timeout": "nope"}, "randomize_client_port": True}, validate=False)
    assert cfg.cli.timeout == 5.0
    assert any(p.startswith("cli.timeout:") for p in cfg.problems)
    assert any(p.startswith("randomize_client_port:") for p in cfg.problems)


def test_oidc_client_secret_path(tmp_path):
    (tmp_path / "secret").write_text("  s3cret\n")
    env = {"CREDENTIALS_DIRECTORY": str(tmp_path)}
    cfg = load(tmp_path, {**VALID, "oidc": {"issuer": "https://idp.example", "client_id": "hs",
                                            "client_secret_path": "${CREDENTIALS_DIRECTORY}/secret"}}, env)
    assert read_oidc_client_secret(cfg, env) == "s3cret"


# --- durations --------------------------------------------------------------------------------


@pytest.mark.parametrize("text, seconds", [
    ("0", 0.0), (0, 0.0), ("30m", 1800.0), ("1h30m", 5400.0), ("800ms", 0.8), ("90d", 90 * 86400.0),
    ("2w", 14 * 86400.0), ("1y", 365 * 86400.0), ("1.5h", 5400.0), ("500us", 0.0005), ("10ns", 1e-8),
    ("-1s", -1.0), ("3h", 10800.0), ("120s", 120.0), ("1d12h", 129600.0),
])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "abc", "10", 1800, "1x", "h", "1h 30m", True, "1.2.3s"])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize("seconds, text", [
    (0, "0s"), (0.8, "800ms"), (5400, "1h30m"), (120, "2m"), (7776000, "2160h"), (0.1, "100ms"), (1.5, "1.5s"),
])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text
    assert parse_duration(text) == pytest.approx(seconds)


# --- dev config -------------------------------------------------------------------------------


def test_dev_config(tmp_path, monkeypatch):
    monkeypatch.setenv("HEADSCALE_LISTEN_ADDR", "0.0.0.0:1")  # env is not read for the dev config
    cfg = dev_config(str(tmp_path / "data"))
    d = str(tmp_path / "data")
    assert cfg.listen_addr == "127.0.0.1:8080"
    assert cfg.server_url == "http://127.0.0.1:8080"
    assert cfg.metrics_listen_addr == "127.0.0.1:9090"
    assert cfg.database.type == "sqlite" and cfg.database.sqlite.path == os.path.join(d, "db.sqlite")
    assert cfg.noise.private_key_path == os.path.join(d, "noise_private.key")
    assert cfg.unix_socket == os.path.join(d, "headscale.sock")
    assert cfg.derp.urls == () and cfg.derp.server.enabled is False
    assert cfg.policy.mode == "database"
    assert cfg.dns.magic_dns is True and cfg.dns.base_domain
    assert dev_config(d, overrides={"listen_addr": "127.0.0.1:0"}).listen_addr == "127.0.0.1:0"


def test_legacy_dns_semantics_of_headscale_0_22(tmp_path):
    # dns_config without magic_dns: MagicDNS stayed off then.
    cfg = load(tmp_path, {"dns_config": {"nameservers": ["1.1.1.1"], "base_domain": "old.example"}})
    assert cfg.dns.magic_dns is False and cfg.dns.nameservers.global_ == ("1.1.1.1",)
    assert any("MagicDNS stays off as in headscale 0.22" in w for w in cfg.warnings)
    # a 0.22-style file with no DNS section at all: nodes got no DNS settings.
    cfg = load(tmp_path, {"ip_prefixes": ["100.64.0.0/10"], "db_path": "/tmp/x.sqlite"})
    assert cfg.dns.magic_dns is False and cfg.dns.override_local_dns is False
    assert any("no dns section" in w for w in cfg.warnings)
