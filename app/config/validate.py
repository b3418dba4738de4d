"""Cross-key validation: rules that look at more than one key.

Runs on the flat ``{dotted key: typed value}`` dict after every single value has been parsed
(type, choices and per-key checks come from the settings table). Each rule adds to
``problems`` (the config cannot be used) or ``warnings`` (it can, but probably should not be);
all rules always run so that every problem is reported at once. A rule is skipped when one of
its keys already failed to parse (``bad``), to avoid follow-up noise.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

CGNAT_V4 = ipaddress.ip_network("100.64.0.0/10")
TAILSCALE_ULA_V6 = ipaddress.ip_network("fd7a:115c:a1e0::/48")
MIN_EPHEMERAL_TIMEOUT = 65.0
UNIX_PATH_MAX = 107  # sun_path is 108 bytes including the terminating NUL

_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)", re.IGNORECASE)

Rule = Callable[["Checker"], None]
RULES: list[Rule] = []


def rule(*keys: str) -> Callable[[Callable[[Checker], None]], Rule]:
    def wrap(fn: Callable[[Checker], None]) -> Rule:
        def run(c: Checker) -> None:
            if not any(k in c.bad for k in keys):
                fn(c)

        run.__name__ = fn.__name__
        RULES.append(run)
        return run

    return wrap


class Checker:
    def __init__(self, values: dict[str, Any], bad: set[str], env: Mapping[str, str]) -> None:
        self.v = values
        self.bad = bad
        self.env = env
        self.problems: list[str] = []
        self.warnings: list[str] = []

    def problem(self, text: str) -> None:
        self.problems.append(text)

    def warn(self, text: str) -> None:
        self.warnings.append(text)


def validate(values: dict[str, Any], bad: set[str], env: Mapping[str, str]) -> tuple[list[str], list[str]]:
    c = Checker(values, bad, env)
    for r in RULES:
        r(c)
    return c.problems, c.warnings


def is_domain(name: str) -> bool:
    if not name or name.endswith(".") or len(name) > 253:
        return False
    return all(_LABEL.fullmatch(label) for label in name.split("."))


def is_nameserver(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        pass
    parts = urlsplit(text)
    return parts.scheme in ("https", "http") and bool(parts.hostname)


# --- rules ------------------------------------------------------------------------------------


@rule("noise.private_key_path")
def _noise_key(c: Checker) -> None:
    if not c.v["noise.private_key_path"]:
        c.problem("noise.private_key_path: must be set (the TS2021 Noise protocol needs a key)")


@rule("server_url", "dns.base_domain")
def _server_url_vs_base_domain(c: Checker) -> None:
    base = c.v["dns.base_domain"].lower()
    host = (urlsplit(c.v["server_url"]).hostname or "").lower()
    if not base or not host:
        return
    if host == base:
        c.problem(
            f"server_url: its host {host!r} is the same as dns.base_domain; MagicDNS would take "
            "over that domain and clients could no longer reach the server"
        )
    elif host.endswith("." + base):
        c.problem(
            f"server_url: its host {host!r} is inside dns.base_domain {base!r}; MagicDNS would "
            "take over that domain and clients could no longer reach the server"
        )


@rule("dns.base_domain", "dns.magic_dns")
def _base_domain(c: Checker) -> None:
    base = c.v["dns.base_domain"]
    if base and not is_domain(base):
        c.problem(f"dns.base_domain: {base!r} is not a valid domain (an FQDN without trailing dot)")
    if c.v["dns.magic_dns"] and not base:
        c.problem("dns.base_domain: must be set when dns.magic_dns is true")


@rule("dns.override_local_dns", "dns.nameservers.global")
def _override_needs_global(c: Checker) -> None:
    if c.v["dns.override_local_dns"] and not c.v["dns.nameservers.global"]:
        c.problem(
            "dns.nameservers.global: must list at least one nameserver when "
            "dns.override_local_dns is true"
        )


@rule("dns.nameservers.global", "dns.nameservers.split", "dns.search_domains")
def _nameservers(c: Checker) -> None:
    for ns in c.v["dns.nameservers.global"]:
        if not is_nameserver(ns):
            c.problem(f"dns.nameservers.global: {ns!r} is neither an IP address nor a DoH URL")
    for domain, servers in c.v["dns.nameservers.split"].items():
        if not is_domain(domain.rstrip(".")):
            c.problem(f"dns.nameservers.split: {domain!r} is not a valid domain")
        for ns in servers:
            if not is_nameserver(ns):
                c.problem(
                    f"dns.nameservers.split.{domain}: {ns!r} is neither an IP address nor a DoH URL"
                )
    for d in c.v["dns.search_domains"]:
        if not is_domain(d.rstrip(".")):
            c.problem(f"dns.search_domains: {d!r} is not a valid domain")


@rule("dns.extra_records", "dns.extra_records_path")
def _extra_records(c: Checker) -> None:
    records = c.v["dns.extra_records"]
    if records and c.v["dns.extra_records_path"]:
        c.problem("dns.extra_records: set either dns.extra_records or dns.extra_records_path, not both")
    for i, r in enumerate(records):
        where = f"dns.extra_records[{i}]"
        if not r["name"]:
            c.problem(f"{where}: name must be set")
        if r["type"] not in ("A", "AAAA"):
            c.problem(f"{where}: type must be A or AAAA (Tailscale clients support no others)")
            continue
        try:
            addr = ipaddress.ip_address(r["value"])
        except ValueError:
            c.problem(f"{where}: value {r['value']!r} is not an IP address")
            continue
        if (addr.version == 4) != (r["type"] == "A"):
            c.problem(f"{where}: value {r['value']!r} does not match type {r['type']}")


@rule("tls_cert_path", "tls_key_path", "tls_letsencrypt_hostname")
def _tls(c: Checker) -> None:
    cert, key = c.v["tls_cert_path"], c.v["tls_key_path"]
    if bool(cert) != bool(key):
        c.problem("tls_cert_path, tls_key_path: set both or neither")
    if c.v["tls_letsencrypt_hostname"] and (cert or key):
        c.problem(
            "tls_letsencrypt_hostname: set either tls_letsencrypt_hostname or "
            "tls_cert_path/tls_key_path, not both"
        )


@rule("tls_letsencrypt_hostname", "tls_letsencrypt_challenge_type", "listen_addr", "acme_url")
def _letsencrypt(c: Checker) -> None:
    if not c.v["tls_letsencrypt_hostname"]:
        return
    if not is_domain(c.v["tls_letsencrypt_hostname"]):
        c.problem("tls_letsencrypt_hostname: is not a valid domain name")
    if not c.v["acme_url"]:
        c.problem("acme_url: must be set when tls_letsencrypt_hostname is set")
    if c.v["tls_letsencrypt_challenge_type"] == "TLS-ALPN-01" and not c.v["listen_addr"].endswith(":443"):
        c.warn(
            "tls_letsencrypt_challenge_type TLS-ALPN-01 needs the server reachable on port 443; "
            "listen_addr should probably end in :443"
        )


@rule("prefixes.v4", "prefixes.v6")
def _prefixes(c: Checker) -> None:
    v4, v6 = c.v["prefixes.v4"], c.v["prefixes.v6"]
    if not v4 and not v6:
        c.problem("prefixes: no IPv4 or IPv6 prefix configured, at least one is required")
    if v4 and not ipaddress.ip_network(v4, strict=False).subnet_of(CGNAT_V4):
        c.warn(
            f"prefixes.v4 {v4} is outside 100.64.0.0/10: not supported, Tailscale clients "
            "assume the CGNAT range and will misbehave"
        )
    if v6 and not ipaddress.ip_network(v6, strict=False).subnet_of(TAILSCALE_ULA_V6):
        c.warn(
            f"prefixes.v6 {v6} is outside fd7a:115c:a1e0::/48: not supported, Tailscale clients "
            "assume that range and will misbehave"
        )


@rule("node.routes.ha.probe_interval", "node.routes.ha.probe_timeout")
def _ha_probe(c: Checker) -> None:
    interval, timeout = c.v["node.routes.ha.probe_interval"], c.v["node.routes.ha.probe_timeout"]
    if interval <= 0:
        return
    if interval < 2:
        c.problem("node.routes.ha.probe_interval: must be at least 2s (or 0 to disable probing)")
    if timeout < 1:
        c.problem("node.routes.ha.probe_timeout: must be at least 1s")
    if timeout >= interval:
        c.problem("node.routes.ha.probe_timeout: must be less than node.routes.ha.probe_interval")


@rule("derp.server.enabled", "derp.server.stun_listen_addr", "derp.server.stun.enabled")
def _derp_stun(c: Checker) -> None:
    if (c.v["derp.server.enabled"] and c.v["derp.server.stun.enabled"]
            and not c.v["derp.server.stun_listen_addr"]):
        c.problem("derp.server.stun_listen_addr: must be set when derp.server.enabled is true")


@rule("derp.server.enabled", "derp.server.automatically_add_embedded_derp_region", "derp.paths")
def _derp_region(c: Checker) -> None:
    if (c.v["derp.server.enabled"] and not c.v["derp.server.automatically_add_embedded_derp_region"]
            and not c.v["derp.paths"]):
        c.problem(
            "derp.paths: with derp.server.automatically_add_embedded_derp_region false, the "
            "embedded DERP region must be described in a derp.paths file"
        )


@rule("derp.server.enabled", "server_url")
def _derp_tls(c: Checker) -> None:
    if c.v["derp.server.enabled"] and not c.v["server_url"].startswith("https://"):
        c.warn("derp.server.enabled: the embedded DERP server needs TLS; server_url should be https://")


@rule("derp.server.enabled", "derp.urls", "derp.paths")
def _derp_any(c: Checker) -> None:
    if not c.v["derp.server.enabled"] and not c.v["derp.urls"] and not c.v["derp.paths"]:
        c.warn("derp: no DERP servers configured; nodes without a direct path cannot reach each other")


@rule("oidc.client_secret", "oidc.client_secret_path", "oidc.issuer", "oidc.client_id")
def _oidc(c: Checker) -> None:
    secret, path = c.v["oidc.client_secret"], c.v["oidc.client_secret_path"]
    if secret and path:
        c.problem("oidc.client_secret, oidc.client_secret_path: set only one of them")
    if c.v["oidc.issuer"] and not c.v["oidc.client_id"]:
        c.problem("oidc.client_id: must be set when oidc.issuer is set")
    if path:
        resolved = expand_env(path, c.env)
        if not os.path.isfile(resolved):
            c.problem(f"oidc.client_secret_path: file {resolved!r} not found")


@rule("oidc.issuer", "oidc.scope")
def _oidc_scope(c: Checker) -> None:
    if c.v["oidc.issuer"] and "openid" not in (c.v["oidc.scope"] or []):
        c.problem("oidc.scope: must include openid (without it the provider sends no ID token and nobody "
                  "can sign in)")


@rule("policy.mode", "policy.path")
def _policy(c: Checker) -> None:
    path = c.v["policy.path"]
    if c.v["policy.mode"] == "file" and path and not os.path.isfile(path):
        c.problem(f"policy.path: file {path!r} not found")


@rule("unix_socket")
def _unix_socket(c: Checker) -> None:
    sock = c.v["unix_socket"]
    if not sock:
        c.problem("unix_socket: must be set (the CLI talks to the server through it)")
    elif len(os.fsencode(sock)) > UNIX_PATH_MAX:
        c.problem(f"unix_socket: path is longer than {UNIX_PATH_MAX} bytes, the limit for unix sockets")


@rule("listen_addr", "metrics_listen_addr")
def _listeners(c: Checker) -> None:
    if c.v["metrics_listen_addr"] and c.v["metrics_listen_addr"] == c.v["listen_addr"]:
        c.problem("metrics_listen_addr: must differ from listen_addr")


@rule("database.type", "database.postgres.host", "database.postgres.name", "database.postgres.user")
def _postgres(c: Checker) -> None:
    if str(c.v["database.type"]).lower() not in ("postgres", "postgresql"):
        return
    for key in ("host", "name", "user"):
        if not c.v[f"database.postgres.{key}"]:
            c.problem(f"database.postgres.{key}: must be set when database.type is postgres")
    if c.v["database.postgres.max_idle_conns"] > c.v["database.postgres.max_open_conns"]:
        c.warn("database.postgres.max_idle_conns is larger than max_open_conns; "
               "at most max_open_conns stay open")


@rule()
def _no_effect(c: Checker) -> None:
    """A key kept only so headscale configs load: a value other than its default is reported,
    never silently dropped."""
    from app.config.settings import ACTIVE

    for s in ACTIVE:
        if s.compat_only and s.name not in c.bad and c.v[s.name] != s.type.parse(s.default, False):
            c.warn(f"{s.name} has no effect in this server and is ignored ({s.help.rstrip('.')}); "
                   "remove it")


# Keys that only mean something when another key enables their feature: set on their own they
# would be silently ignored, so they are reported. (condition, its description, dependent keys)
# Paths that configs pre-fill (tls_letsencrypt_cache_dir, derp.server.*) are not listed: headscale's
# own example sets them with the feature off.
_DEPENDENT: list[tuple[Callable[[dict[str, Any]], bool], str, tuple[str, ...]]] = [
    (lambda v: bool(v["oidc.issuer"]), "oidc.issuer is set",
     ("oidc.client_id", "oidc.client_secret", "oidc.client_secret_path", "oidc.scope",
      "oidc.extra_params", "oidc.allowed_domains", "oidc.allowed_users", "oidc.allowed_groups",
      "oidc.email_verified_required", "oidc.use_expiry_from_token", "oidc.pkce.enabled",
      "oidc.pkce.method", "oidc.only_start_if_oidc_is_available")),
    (lambda v: bool(v["tls_letsencrypt_hostname"]), "tls_letsencrypt_hostname is set",
     ("acme_url", "acme_email", "tls_letsencrypt_challenge_type", "tls_letsencrypt_listen",
      "tls_letsencrypt_renew_before")),
    (lambda v: str(v["database.type"]).lower() in ("postgres", "postgresql"),
     "database.type is postgres",
     ("database.postgres.host", "database.postgres.port", "database.postgres.name",
      "database.postgres.user", "database.postgres.pass", "database.postgres.ssl",
      "database.postgres.max_open_conns", "database.postgres.max_idle_conns",
      "database.postgres.conn_max_idle_time_secs")),
]


@rule()
def _dependent(c: Checker) -> None:
    from app.config.settings import BY_NAME

    for enabled, when, keys in _DEPENDENT:
        try:
            on = enabled(c.v)
        except KeyError:
            continue
        if on:
            continue
        for key in keys:
            s = BY_NAME.get(key)
            if s is None or key in c.bad or s.removed is not None or s.compat_only:
                continue
            if c.v.get(key) != s.type.parse(s.default, False):
                c.warn(f"{key} has no effect unless {when}; set that too, or remove {key}")


def expand_env(text: str, env: Mapping[str, str]) -> str:
    """``$VAR`` / ``${VAR}`` expansion against ``env`` (unknown variables become empty, as in Go)."""
    def sub(m: re.Match[str]) -> str:
        return env.get(m.group(1) or m.group(2), "")

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)", sub, text)
