"""THE settings table: every configuration key, its type, default, help and flags.

This one table drives parsing, defaults, single-value validation (type, ``choices``,
``check``), environment overrides, masking of secrets and the generated ``docs/config.md``
(STYLE.md rule 8). Cross-key rules (TLS both-or-neither, base_domain vs server_url, …) are in
``validate.py``; they only read values that this table has already parsed.

Defaults are headscale 0.29's: the code default (``viper.SetDefault`` in
``hscontrol/types/config.go``) where there is one, otherwise the value of
``config-example.yaml``. Where this server deliberately differs, the help text says so.

Rows with ``removed=`` are keys headscale removed or renamed; see ``Removal``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.config.values import (
    IP,
    URL,
    Bool,
    Duration,
    FileMode,
    HostPort,
    Int,
    Path,
    Prefix,
    PrefixList,
    Records,
    Str,
    StrList,
    StrListMap,
    StrMap,
    URLList,
    ValueType,
)

ENV_PREFIX = "HEADSCALE_"

# What happens when a removed key is present (mirrors headscale's "deprecator").
FATAL = "fatal"  # loading fails, always
FATAL_UNLESS_NEW = "fatal-unless-new"  # fails unless the replacement key is also set (then: warning)
MOVED = "moved"  # warning; the value is used for the replacement key unless that is set
IGNORED = "ignored"  # warning; the value is ignored (headscale ignores these silently)
# Keys of older headscale releases (the 0.22-era tutorials): the value is used for the
# replacement key(s) with one warning naming them; a different value for the replacement too is
# an error. ``Removal.convert`` turns one old value into {new key: value} (app/config/legacy.py).
RENAMED = "renamed"


@dataclass(frozen=True)
class Removal:
    action: str
    replacement: str | None = None  # dotted key that replaced it
    hint: str = ""  # extra remediation text
    since: str = ""
    convert: Callable[[Any], dict[str, Any]] | None = None  # RENAMED: old value → new keys


@dataclass(frozen=True)
class Setting:
    name: str  # dotted YAML key path
    type: ValueType
    default: Any  # YAML-level value (parsed with ``type`` like a file value)
    help: str
    secret: bool = False  # masked in dumps, never echoed in error messages
    choices: tuple[str, ...] | None = None
    check: Callable[[Any], str | None] | None = None  # typed value → problem text or None
    compat_only: bool = False  # accepted for headscale compatibility, no effect here
    env: bool = True  # may be set with HEADSCALE_<NAME>
    removed: Removal | None = None

    @property
    def env_name(self) -> str:
        return ENV_PREFIX + self.name.upper().replace(".", "_")

    @property
    def attr_path(self) -> tuple[str, ...]:
        return tuple(self.name.split("."))


def _positive(v: float) -> str | None:
    return None if v > 0 else "must be greater than zero"


def _non_negative(v: float) -> str | None:
    return None if v >= 0 else "must not be negative"


def _database_type(v: str) -> str | None:
    return None


def _split_ip_prefixes(v: tuple[str, ...]) -> dict[str, Any]:
    """headscale 0.22's ``ip_prefixes`` list → prefixes.v4 / prefixes.v6 (one of each at most;
    a family that is not listed is disabled, as it was then)."""
    import ipaddress

    out: dict[str, Any] = {"prefixes.v4": "", "prefixes.v6": ""}
    for item in v:
        try:
            net = ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ValueError(f"{item!r} is not a CIDR prefix") from None
        key = f"prefixes.v{net.version}"
        if out[key]:
            raise ValueError(f"more than one IPv{net.version} prefix; only one per family is "
                             f"supported (set {key})")
        out[key] = item
    return out


def _randomize_client_port(v: bool) -> dict[str, Any]:
    """Only ``false`` (the default) carries over: the setting lives in the policy now."""
    if v:
        raise ValueError("this key has been removed and cannot be mapped onto a config key")
    return {}


def _ephemeral(v: float) -> str | None:
    # The client keep-alive is 60 s; a shorter timeout would delete connected nodes.
    return None if v > 65 else "is set too low, must be more than 65s"


S = Setting
LOG_LEVELS = ("trace", "debug", "info", "warn", "error", "fatal", "panic", "disabled")
RANDOMIZE_HINT = (
    'Set "randomizeClientPort": true at the top level of the policy (see policy.path / '
    'policy.mode), or grant "https://tailscale.com/cap/randomize-client-port" with a '
    '"nodeAttrs" entry.'
)

SETTINGS: tuple[Setting, ...] = (
    # --- server -------------------------------------------------------------------------------
    S("server_url", URL(allow_empty=False), "http://127.0.0.1:8080",
      "The URL clients connect to, e.g. https://headscale.example.com:443. Must start with "
      "http:// or https://; its host must not be dns.base_domain or inside it."),
    S("listen_addr", HostPort(), "127.0.0.1:8080",
      "Address the main HTTP listener binds to (control protocol, API, DERP, OIDC). "
      "Use 0.0.0.0:8080 in production."),
    S("metrics_listen_addr", HostPort(allow_empty=True), "127.0.0.1:9090",
      "Address for /metrics and /debug; keep it private. Empty disables the listener."),
    S("grpc_listen_addr", HostPort(allow_empty=True), ":50443",
      "headscale's gRPC listener. This server has no gRPC: the CLI uses the REST API over "
      "unix_socket, or over HTTPS with cli.address.", compat_only=True),
    S("grpc_allow_insecure", Bool(), False,
      "headscale: allow its gRPC listener without TLS. This server has no gRPC listener.",
      compat_only=True),
    S("trusted_proxies", PrefixList(), [],
      "CIDRs of reverse proxies whose True-Client-IP / X-Real-IP / X-Forwarded-For headers are "
      "honoured. Empty ignores those headers. 0.0.0.0/0 and ::/0 are refused."),
    S("disable_check_updates", Bool(), False,
      "Disable the check for newer releases. This server never checks (it never phones "
      "home), so it always behaves as with true."),
    # --- noise --------------------------------------------------------------------------------
    S("noise.private_key_path", Path(), "/var/lib/headscale/noise_private.key",
      "Private key of the TS2021 Noise protocol (the server's machine key). Generated if "
      "missing. Relative paths are relative to the config file."),
    # --- prefixes -----------------------------------------------------------------------------
    S("prefixes.v4", Prefix(version=4), "100.64.0.0/10",
      "IPv4 range node addresses come from. Must be inside 100.64.0.0/10 (a warning "
      "otherwise). Empty disables IPv4 (one of v4/v6 is required)."),
    S("prefixes.v6", Prefix(version=6), "fd7a:115c:a1e0::/48",
      "IPv6 range node addresses come from. Must be inside fd7a:115c:a1e0::/48 (a warning "
      "otherwise). Empty disables IPv6."),
    S("prefixes.allocation", Str(), "sequential",
      "How addresses are picked: sequential (next free) or random.",
      choices=("sequential", "random")),
    # --- derp ---------------------------------------------------------------------------------
    S("derp.server.enabled", Bool(), False,
      "Run the embedded DERP relay (and STUN) and add it to the DERP map. server_url should "
      "be https://."),
    S("derp.server.region_id", Int(), 999,
      "Region ID of the embedded DERP server; it wins over a region with the same ID from "
      "derp.urls / derp.paths."),
    S("derp.server.region_code", Str(), "headscale",
      "Region code shown in the Tailscale UI."),
    S("derp.server.region_name", Str(), "Headscale Embedded DERP",
      "Region name shown in the Tailscale UI."),
    S("derp.server.verify_clients", Bool(), True,
      "Only relay for clients that are nodes of this server."),
    S("derp.server.stun_listen_addr", HostPort(allow_empty=True), "0.0.0.0:3478",
      "UDP address of the STUN server; required when derp.server.enabled and "
      "derp.server.stun.enabled are true."),
    S("derp.server.private_key_path", Path(), "/var/lib/headscale/derp_server_private.key",
      "Private key of the embedded DERP server. Generated if missing."),
    S("derp.server.automatically_add_embedded_derp_region", Bool(), True,
      "Add the embedded DERP region to the DERP map automatically. If false, describe it "
      "yourself in a derp.paths file."),
    S("derp.server.ipv4", IP(version=4), "",
      "Public IPv4 address advertised for the embedded DERP server (optional)."),
    S("derp.server.ipv6", IP(version=6), "",
      "Public IPv6 address advertised for the embedded DERP server (optional)."),
    S("derp.server.stun.enabled", Bool(), True,
      "Run the STUN server with the embedded DERP server (headscale code default; not in "
      "the example config). false: no STUN listener, and the DERP map tells clients the "
      "region has no STUN (STUNPort -1)."),
    S("derp.urls", URLList(), ["https://controlplane.tailscale.com/derpmap/default"],
      "URLs of JSON DERP maps to fetch. Empty list: no external DERP map."),
    S("derp.paths", StrList(), [],
      "Local YAML DERP map files (format of headscale's derp-example.yaml)."),
    S("derp.auto_update_enabled", Bool(), True,
      "Refresh the DERP maps from derp.urls / derp.paths periodically."),
    S("derp.update_frequency", Duration(), "3h",
      "How often the DERP maps are refreshed.", check=_positive),
    # --- node ---------------------------------------------------------------------------------
    S("node.expiry", Duration(), "0",
      "Default key expiry of untagged nodes, whatever the registration method. 0 = never "
      "(Tailscale SaaS uses 180d). A client's explicit expiry request wins.",
      check=_non_negative),
    S("node.ephemeral.inactivity_timeout", Duration(), "120s",
      "How long an ephemeral node may be disconnected before it is deleted. Must be more "
      "than 65s. (headscale code default 120s; the example config uses 30m.)",
      check=_ephemeral),
    S("node.routes.ha.probe_interval", Duration(), "10s",
      "How often each router of an HA subnet route (a prefix two or more online routers serve) "
      "is pinged over its map session. 0 disables probing; otherwise at least 2s.",
      check=_non_negative),
    S("node.routes.ha.probe_timeout", Duration(), "5s",
      "How long to wait for a probe answer before the router is marked unhealthy: it loses "
      "primary to a healthy router (within probe_interval + probe_timeout, as a delta to every "
      "node) and stays passed over until it answers again. At least 1s and less than "
      "probe_interval.", check=_non_negative),
    # --- database -----------------------------------------------------------------------------
    S("database.type", Str(), "sqlite",
      "sqlite (or sqlite3), or postgres (or postgresql): headscale's tables on a PostgreSQL "
      "server (database.postgres.*). With postgres, several `headscale serve` processes may "
      "share the database: one is active, the others stand by (README: Highly available "
      "deployment).", choices=("sqlite", "sqlite3", "postgres", "postgresql"),
      check=_database_type),
    S("database.debug", Bool(), False,
      "Log every SQL statement (needs log.level debug), with values replaced by ? so no key, "
      "hash or name reaches the log. Off: no SQL is logged at any log level."),
    S("database.gorm.prepare_stmt", Bool(), True,
      "headscale's ORM (GORM): prepared statements. No GORM here.",
      compat_only=True),
    S("database.gorm.parameterized_queries", Bool(), True,
      "headscale's ORM (GORM): parameterised queries. No GORM here.",
      compat_only=True),
    S("database.gorm.skip_err_record_not_found", Bool(), True,
      "headscale's ORM (GORM): do not log 'record not found'. No GORM here.", compat_only=True),
    S("database.gorm.slow_threshold", Int(), 1000,
      "headscale's ORM (GORM): slow-query threshold in milliseconds. No GORM here.",
      compat_only=True),
    S("database.sqlite.path", Path(), "/var/lib/headscale/db.sqlite",
      "SQLite database file. Relative paths are relative to the config file."),
    S("database.sqlite.write_ahead_log", Bool(), True,
      "Use SQLite WAL mode. Always on here (Litestream replicates the WAL); false is refused "
      "with a warning and WAL stays on. Commits use synchronous=FULL: a write a client was told "
      "succeeded is on disk, also after a power loss (README, Durability).", compat_only=True),
    S("database.sqlite.wal_autocheckpoint", Int(), 1000,
      "WAL frames before an automatic checkpoint. SQLite's 1000 is always used here (other "
      "values are reported and ignored: Litestream manages checkpoints).",
      check=_non_negative, compat_only=True),
    S("database.postgres.host", Str(), "",
      "PostgreSQL host name or address, or the directory of its unix socket. Required with "
      "database.type postgres."),
    S("database.postgres.port", Int(), 0, "PostgreSQL port; 0 means libpq's default (5432)."),
    S("database.postgres.name", Str(), "", "PostgreSQL database name. Required with postgres."),
    S("database.postgres.user", Str(), "", "PostgreSQL user. Required with postgres."),
    S("database.postgres.pass", Str(), "", "PostgreSQL password (empty: none, or libpq's "
      "PGPASSWORD / .pgpass).", secret=True),
    S("database.postgres.ssl", Str(), "false", "TLS to PostgreSQL: false (sslmode disable), "
      "true (libpq's default, prefer), or a libpq sslmode (require, verify-full, ...)."),
    S("database.postgres.max_open_conns", Int(), 10,
      "Most PostgreSQL connections the pool opens (plus one for the HA lease).",
      check=_positive),
    S("database.postgres.max_idle_conns", Int(), 10,
      "PostgreSQL connections kept open while idle (at most max_open_conns).", check=_non_negative),
    S("database.postgres.conn_max_idle_time_secs", Int(), 3600,
      "Seconds an idle PostgreSQL connection beyond max_idle_conns stays open.", check=_positive),
    # --- TLS ----------------------------------------------------------------------------------
    S("acme_url", URL(), "https://acme-v02.api.letsencrypt.org/directory",
      "ACME directory URL for Let's Encrypt."),
    S("acme_email", Str(), "", "E-mail address registered with the ACME provider."),
    S("tls_letsencrypt_hostname", Str(), "",
      "Domain to get a Let's Encrypt certificate for. Excludes tls_cert_path/tls_key_path."),
    S("tls_letsencrypt_cache_dir", Path(), "/var/www/.cache",
      "Where ACME certificates and account data are stored (headscale code default; the "
      "example config uses /var/lib/headscale/cache)."),
    S("tls_letsencrypt_challenge_type", Str(), "HTTP-01",
      "ACME challenge: HTTP-01, or TLS-ALPN-01 (needs the server on port 443).",
      choices=("HTTP-01", "TLS-ALPN-01")),
    S("tls_letsencrypt_listen", HostPort(), ":http",
      "Where the HTTP-01 challenge listener binds (:http = port 80)."),
    S("tls_letsencrypt_renew_before", Duration(), "720h",
      "How long before expiry the ACME certificate is renewed (not a headscale key; headscale "
      "renews 30 days early, like this default). Renewal failures retry with backoff while the "
      "current certificate stays in service.", check=_positive),
    S("tls_cert_path", Path(), "", "TLS certificate (PEM). Set together with tls_key_path."),
    S("tls_key_path", Path(), "", "TLS private key (PEM). Set together with tls_cert_path."),
    # --- log ----------------------------------------------------------------------------------
    S("log.level", Str(), "info", "Log level.", choices=LOG_LEVELS),
    S("log.format", Str(), "text", "Log format: text or json.", choices=("text", "json")),
    # --- policy -------------------------------------------------------------------------------
    S("policy.mode", Str(), "file",
      "Where the policy lives: file (policy.path, reloaded on SIGHUP) or database (set with "
      "`headscale policy set`).", choices=("file", "database")),
    S("policy.path", Path(), "",
      "HuJSON policy file for policy.mode file. Empty: no policy, everything is allowed."),
    # --- dns ----------------------------------------------------------------------------------
    S("dns.magic_dns", Bool(), True, "Enable MagicDNS (needs dns.base_domain)."),
    S("dns.base_domain", Str(), "",
      "Domain of MagicDNS names (host.base_domain): an FQDN without trailing dot. It must "
      "differ from server_url's host and not contain it. (The example config uses "
      "example.com; headscale has no code default.)"),
    S("dns.override_local_dns", Bool(), True,
      "Force clients to use dns.nameservers.global instead of their local DNS (needs at "
      "least one global nameserver)."),
    S("dns.nameservers.global", StrList(), [],
      "Nameservers for all queries: IP addresses or DoH URLs (e.g. https://dns.nextdns.io/ID). "
      "The attribute is cfg.dns.nameservers.global_ (global is a Python keyword)."),
    S("dns.nameservers.split", StrListMap(), {},
      "Split DNS: map of domain → list of nameservers."),
    S("dns.search_domains", StrList(), [],
      "Extra search domains (dns.base_domain is always first when MagicDNS is on)."),
    S("dns.extra_records", Records(), [],
      "Extra A/AAAA records: list of {name, type, value}. Excludes dns.extra_records_path. "
      "From env: JSON."),
    S("dns.extra_records_path", Path(), "",
      "JSON file of extra A/AAAA records ([{\"name\", \"type\", \"value\"}, ...]), watched: "
      "a change reaches connected nodes as a DNS update within about a second; a broken file "
      "keeps the last good records (and says why in the log). Excludes dns.extra_records."),
    # --- unix socket --------------------------------------------------------------------------
    S("unix_socket", Str(), "/var/run/headscale/headscale.sock",
      "Unix socket of the admin API; the CLI uses it without authentication (local trust)."),
    S("unix_socket_permission", FileMode(), "0770",
      "Permission bits of unix_socket (octal string). cfg.unix_socket_permission is an int."),
    # --- oidc ---------------------------------------------------------------------------------
    S("oidc.only_start_if_oidc_is_available", Bool(), True,
      "Refuse to start while the OIDC provider cannot be reached."),
    S("oidc.issuer", URL(), "", "OIDC issuer URL. Setting it enables OIDC login."),
    S("oidc.client_id", Str(), "", "OIDC client ID."),
    S("oidc.client_secret", Str(), "", "OIDC client secret. Excludes client_secret_path.",
      secret=True),
    S("oidc.client_secret_path", Str(), "",
      "File holding the OIDC client secret; $VARS are expanded (e.g. "
      "${CREDENTIALS_DIRECTORY}/oidc_client_secret)."),
    S("oidc.use_expiry_from_token", Bool(), False,
      "Use the ID token's expiry as node expiry (node.expiry is then ignored for OIDC nodes)."),
    S("oidc.scope", StrList(), ["openid", "profile", "email"],
      "Scopes requested; keep openid."),
    S("oidc.email_verified_required", Bool(), True,
      "Only sync e-mail addresses the provider marks as verified."),
    S("oidc.extra_params", StrMap(), {},
      "Extra key/value parameters for the authorization endpoint (e.g. domain_hint)."),
    S("oidc.allowed_domains", StrList(), [], "Only accept users whose e-mail domain is listed."),
    S("oidc.allowed_users", StrList(), [], "Only accept these e-mail addresses."),
    S("oidc.allowed_groups", StrList(), [], "Only accept members of one of these groups."),
    S("oidc.pkce.enabled", Bool(), False, "Use PKCE (RFC 7636)."),
    S("oidc.pkce.method", Str(), "S256", "PKCE method.", choices=("plain", "S256")),
    # --- features -----------------------------------------------------------------------------
    S("logtail.enabled", Bool(), False,
      "Let clients send their logs to Tailscale Inc.'s logtail."),
    S("taildrop.enabled", Bool(), True,
      "Allow Taildrop file sharing (withholds the file-sharing capability when false)."),
    S("auto_update.enabled", Bool(), False,
      "Default clients without a local choice to auto-update (default-auto-update cap)."),
    # --- cli ----------------------------------------------------------------------------------
    S("cli.address", Str(), "",
      "Remote server for the CLI (host:port or URL; https:// unless a scheme is given). "
      "Empty: use unix_socket."),
    S("cli.api_key", Str(), "", "API key the CLI sends in remote mode.", secret=True),
    S("cli.timeout", Duration(), "5s", "CLI request timeout.", check=_positive),
    S("cli.insecure", Bool(), False, "Do not verify the remote server's TLS certificate."),
    # --- web console (this server's own; not in headscale) ---------------------------------
    S("console.enabled", Bool(), False,
      "Serve the web console at /admin on listen_addr (machines, users, keys, policy, pending "
      "logins and SSH checks, DERP and metrics). Sign in with an API key (`headscale apikeys "
      "create`). Not a headscale key."),
    S("console.oidc_admins", StrList(), [],
      "With OIDC (oidc.issuer): who may also sign in to the console with OIDC: e-mail addresses "
      "(verified), usernames, or group:<name>. oidc.allowed_* apply too. Empty: API keys only. "
      "Not a headscale key."),
    # --- tuning -------------------------------------------------------------------------------
    S("tuning.register_cache_max_entries", Int(), 1024,
      "Maximum pending interactive registrations (oldest evicted first).",
      check=_non_negative),
    S("tuning.register_cache_expiration", Duration(), "15m",
      "How long a pending interactive registration stays valid.", check=_positive),
    S("tuning.node_store_batch_size", Int(), 100,
      "headscale: node writes collected before its in-memory snapshot is rebuilt. Here every "
      "node write updates the in-memory tailnet at once; there is no batch to size.",
      check=_positive, compat_only=True),
    S("tuning.node_store_batch_timeout", Duration(), "500ms",
      "headscale: longest wait before a partial batch of node writes is applied. Here node "
      "writes are applied at once.", check=_positive, compat_only=True),
    S("tuning.notifier_send_timeout", Duration(), "800ms",
      "headscale: longest wait when handing an update to one connected client. Here handing "
      "over never waits: a client more than tuning.node_mapsession_buffered_chan_size updates "
      "behind gets one full map instead.", check=_positive, compat_only=True),
    S("tuning.batch_change_delay", Duration(), "100ms",
      "How long changes are collected before map updates go out. Deliberately 100ms here: "
      "this server flushes faster than headscale's 800ms default.", check=_non_negative),
    S("tuning.node_mapsession_buffered_chan_size", Int(), 30,
      "Map updates queued for one connected client; a client further behind has its backlog "
      "replaced by one full map.", check=_positive),
    S("tuning.batcher_workers", Int(), 0,
      "headscale: parallel map-update workers (0 = 3/4 of the CPUs). Here map updates are "
      "built on the server's one event loop, so there are no workers to set.",
      check=_non_negative, compat_only=True),
    # Connection limits (this server's own keys; headscale has none): docs/config.md and
    # app/server/limits.py say what each bounds.
    S("tuning.request_head_timeout", Duration(), "10s",
      "Time a new connection has to send its first request head (plain HTTP, and the "
      "/ts2021 Noise or /derp upgrade request, which carries the Noise handshake); then it is "
      "closed.", check=_positive),
    S("tuning.http_idle_timeout", Duration(), "30s",
      "A plain-HTTP keep-alive connection with no request in progress is closed after this.",
      check=_positive),
    S("tuning.request_body_timeout", Duration(), "30s",
      "A plain-HTTP request's whole body (API, web pages) must arrive within this of the "
      "request's start, waiting for tuning.max_buffered_request_bytes included; otherwise 408 "
      "(client too slow) or 503 with Retry-After (no room in time), and the connection closes.",
      check=_positive),
    S("tuning.max_buffered_request_bytes", Int(), 32 << 20,
      "Bytes of plain-HTTP request bodies held in memory at once, all connections together "
      "(each request reserves its Content-Length, at most 4 MiB, until its response is done). "
      "A request that finds no room waits, its socket unread, in arrival order. Sized for a "
      "256 MB machine: 600 concurrent 3 MB API requests peaked at 174 MiB RSS with 32 MiB, "
      "270 MiB with 64 MiB.", check=_positive),
    S("tuning.noise_idle_timeout", Duration(), "60s",
      "A Noise (TS2021) connection with no request in progress (no open map long-poll, no "
      "request being received) is closed after this; clients reconnect when they need to.",
      check=_positive),
    S("tuning.derp_login_timeout", Duration(), "10s",
      "Time a DERP connection has from the upgrade to an accepted ClientInfo.", check=_positive),
    S("tuning.noise_max_streams", Int(), 100,
      "Concurrent HTTP/2 streams one Noise connection may open (a client opening more is "
      "disconnected). Request bodies are capped at 1 MiB per stream and 2 MiB per connection.",
      check=_positive),
    S("tuning.max_connections_per_source", Int(), 256,
      "Open connections one source address may hold (all kinds together); more are closed at "
      "once. Behind a reverse proxy every connection comes from the proxy's address: raise "
      "this or list the proxy in trusted_proxies. 0 = no limit.", check=_non_negative),
    # --- removed and renamed keys -------------------------------------------------------------
    S("ephemeral_node_inactivity_timeout", Duration(), None, "",
      removed=Removal(RENAMED, "node.ephemeral.inactivity_timeout", since="0.23")),
    S("randomize_client_port", Bool(), None, "",
      removed=Removal(RENAMED, None, RANDOMIZE_HINT, since="0.29", convert=_randomize_client_port)),
    S("oidc.expiry", Duration(), None, "",
      removed=Removal(FATAL, "node.expiry", since="0.29")),
    S("oidc.strip_email_domain", Bool(), None, "",
      removed=Removal(FATAL, None, "See the headscale 0.26 changelog.", since="0.26")),
    S("oidc.map_legacy_users", Bool(), None, "",
      removed=Removal(FATAL, None, "See the headscale 0.26 changelog.", since="0.26")),
    S("dns.use_username_in_magic_dns", Bool(), None, "",
      removed=Removal(FATAL, None, "MagicDNS names no longer contain the user.", since="0.23")),
    S("dns_config.use_username_in_magic_dns", Bool(), None, "",
      removed=Removal(FATAL, None, "MagicDNS names no longer contain the user.", since="0.23")),
    S("dns_config.magic_dns", Bool(), None, "",
      removed=Removal(RENAMED, "dns.magic_dns", since="0.23")),
    S("dns_config.base_domain", Str(), None, "",
      removed=Removal(RENAMED, "dns.base_domain", since="0.23")),
    S("dns_config.override_local_dns", Bool(), None, "",
      removed=Removal(RENAMED, "dns.override_local_dns", since="0.23")),
    S("dns_config.nameservers", StrList(), None, "",
      removed=Removal(RENAMED, "dns.nameservers.global", since="0.23")),
    S("dns_config.restricted_nameservers", StrListMap(), None, "",
      removed=Removal(RENAMED, "dns.nameservers.split", since="0.23")),
    S("dns_config.domains", StrList(), None, "",
      removed=Removal(RENAMED, "dns.search_domains", since="0.23")),
    S("dns_config.extra_records", Records(), None, "",
      removed=Removal(RENAMED, "dns.extra_records", since="0.23")),
    S("acl_policy_path", Str(), None, "",
      removed=Removal(RENAMED, "policy.path", since="0.23")),
    S("ip_prefixes", StrList(), None, "", env=False,
      removed=Removal(RENAMED, "prefixes.v4 / prefixes.v6", since="0.23", convert=_split_ip_prefixes)),
    S("db_type", Str(), None, "", env=False,
      removed=Removal(RENAMED, "database.type", since="0.23")),
    S("db_path", Str(), None, "", env=False,
      removed=Removal(RENAMED, "database.sqlite.path", since="0.23")),
    S("db_host", Str(), None, "", env=False,
      removed=Removal(RENAMED, "database.postgres.host", since="0.23")),
    S("db_port", Str(), None, "", env=False,
      removed=Removal(RENAMED, "database.postgres.port", since="0.23")),
    S("db_name", Str(), None, "", env=False,
      removed=Removal(RENAMED, "database.postgres.name", since="0.23")),
    S("db_user", Str(), None, "", env=False,
      removed=Removal(RENAMED, "database.postgres.user", since="0.23")),
    S("db_pass", Str(), None, "", env=False, secret=True,
      removed=Removal(RENAMED, "database.postgres.pass", since="0.23")),
    S("db_ssl", Str(), None, "", env=False,
      removed=Removal(RENAMED, "database.postgres.ssl", since="0.23")),
    S("log_level", Str(), None, "", env=False,
      removed=Removal(RENAMED, "log.level", since="0.17")),
    S("node_update_check_interval", Duration(), None, "", env=False,
      removed=Removal(IGNORED, "tuning.batch_change_delay",
                      "Changes are pushed to connected nodes as they happen; there is nothing to "
                      "poll.", since="0.23")),
    S("private_key_path", Str(), None, "", env=False,
      removed=Removal(IGNORED, "noise.private_key_path",
                      "It was the key of the pre-2022 control protocol, which no client uses any "
                      "more; the TS2021 key is noise.private_key_path.", since="0.23")),
)

ACTIVE: tuple[Setting, ...] = tuple(s for s in SETTINGS if s.removed is None)
REMOVED: tuple[Setting, ...] = tuple(s for s in SETTINGS if s.removed is not None)
BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}
SECRET_KEYS: frozenset[str] = frozenset(s.name for s in SETTINGS if s.secret)

# Every prefix of a key is a section ("dns", "dns.nameservers", "dns_config", …).
SECTIONS: frozenset[str] = frozenset(
    ".".join(s.attr_path[:i]) for s in SETTINGS for i in range(1, len(s.attr_path))
)
ACTIVE_SECTIONS: frozenset[str] = frozenset(
    ".".join(s.attr_path[:i]) for s in ACTIVE for i in range(1, len(s.attr_path))
)


def env_names() -> dict[str, Setting]:
    """HEADSCALE_* variable → setting, for every row that may come from the environment."""
    return {s.env_name: s for s in SETTINGS if s.env}


__all__ = [
    "ACTIVE",
    "ACTIVE_SECTIONS",
    "BY_NAME",
    "ENV_PREFIX",
    "FATAL",
    "FATAL_UNLESS_NEW",
    "IGNORED",
    "MOVED",
    "REMOVED",
    "RENAMED",
    "SECRET_KEYS",
    "SECTIONS",
    "SETTINGS",
    "Removal",
    "Setting",
    "env_names",
]
