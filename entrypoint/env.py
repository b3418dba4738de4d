"""The appliance's environment variables: ONE table drives validation, rendering and the README.

Parse, default and validate are separate steps:

    raw = read(environ)          # every variable of the table, with its default applied
    settings = validate(raw)     # every problem at once -> InvalidEnvironment(problems)

`markdown_table()` renders the same table for README.md (a test checks that they agree).
"""

from __future__ import annotations

import enum
import ipaddress
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit


class Required(enum.Enum):
    NO = ""
    ALWAYS = "yes"
    WITH_S3 = "with Litestream or import"
    WITH_LITESTREAM = "with Litestream"
    WITH_OIDC = "with OIDC"
    UNLESS_URL = "unless a server URL/domain is set"


class Group(enum.Enum):
    SECRETS = "Secrets (fly secrets set / fly storage create)"
    SERVER = "Control server"
    OIDC = "OIDC (enabled when HEADSCALE_OIDC_ISSUER is set)"
    LITESTREAM = "Litestream (replication to S3, age-encrypted)"
    ENTRYPOINT = "Entrypoint"


@dataclass(frozen=True)
class Var:
    name: str
    default: str | None
    help: str
    group: Group
    required: Required = Required.NO
    secret: bool = False
    blank: bool = False  # an explicitly empty value is kept (means "none") instead of the default
    check: Callable[[str], str | None] | None = field(default=None, compare=False)


# --------------------------------------------------------------------------- value checks
# Each returns None when the value is fine, else a short reason (never the value of a secret).

_GO_DURATION = re.compile(r"^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$")
_LONG_DURATION = re.compile(r"^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h|d|w|y))+$")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600,
                 "d": 86400, "w": 7 * 86400, "y": 365 * 86400}
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off", ""}
LOG_LEVELS = ("panic", "fatal", "error", "warn", "info", "debug", "trace")


def duration_seconds(value: str) -> float:
    """Seconds in a Go-style duration (`1h30m`, `10s`, `180d`); `0` is zero."""
    if value == "0":
        return 0.0
    total = 0.0
    for number, _, unit in re.findall(r"(\d+(\.\d+)?)(ns|us|µs|ms|s|m|h|d|w|y)", value):
        total += float(number) * _UNIT_SECONDS[unit]
    return total


def check_bool(value: str) -> str | None:
    return None if value.strip().lower() in _TRUE | _FALSE else "must be true or false"


def as_bool(value: str) -> bool:
    return value.strip().lower() in _TRUE


def check_go_duration(value: str) -> str | None:
    if value == "0" or _GO_DURATION.match(value):
        return None
    return "must be a duration such as 1s, 10s, 1h or 1h30m"


def check_positive_go_duration(value: str) -> str | None:
    problem = check_go_duration(value)
    if problem is None and duration_seconds(value) <= 0:
        return "must be greater than zero"
    return problem


def check_expiry(value: str) -> str | None:
    if value == "0" or _LONG_DURATION.match(value):
        return None
    return "must be 0 (never) or a duration such as 180d, 12h or 1w"


def check_ephemeral_timeout(value: str) -> str | None:
    if not _GO_DURATION.match(value):
        return "must be a duration such as 30m or 120s"
    if duration_seconds(value) <= 65:
        return "must be longer than 65s (clients send keep-alives every 60s)"
    return None


def check_noise_key(value: str) -> str | None:
    if re.fullmatch(r"privkey:[0-9a-f]{64}", value.strip()):
        return None
    return "must be privkey:<64 lowercase hex digits> (echo privkey:$(openssl rand -hex 32))"


def check_age_key(value: str) -> str | None:
    import pyrage

    try:
        pyrage.x25519.Identity.from_str(value.strip())
    except Exception:  # noqa: BLE001 - pyrage's IdentityError is not importable; any failure = unusable
        return "is not an age X25519 secret key (AGE-SECRET-KEY-1..., from age-keygen)"
    return None


def check_http_url(value: str) -> str | None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http:// or https:// URL"
    return None


def check_hostname(value: str) -> str | None:
    if "://" in value or "/" in value:
        return "must be a bare host name such as vpn.example.com (no scheme, no path)"
    if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*",
                        value):
        return "must be a host name such as vpn.example.com"
    return None


def check_host_port(value: str) -> str | None:
    _host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        return "must be host:port, e.g. 0.0.0.0:8080"
    return None


def check_log_level(value: str) -> str | None:
    return None if value in LOG_LEVELS else "must be one of " + ", ".join(LOG_LEVELS)


def _choice(*choices: str) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        return None if value in choices else "must be one of " + ", ".join(choices)

    return check


def _prefix(version: int, standard: str) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        if value == "":
            return None
        try:
            net = ipaddress.ip_network(value, strict=True)
        except ValueError:
            return f"must be an IPv{version} prefix such as {standard}"
        if net.version != version:
            return f"must be an IPv{version} prefix such as {standard}"
        return None

    return check


def check_dns_name(value: str) -> str | None:
    if value and check_hostname(value) is None:
        return None
    return "must be a DNS name such as tailnet or ts.example.com"


def parse_postgres_url(value: str) -> dict[str, str]:
    """host, port, name, user, password, ssl (sslmode, or "false") of a postgres:// URL."""
    from urllib.parse import parse_qs, unquote

    parts = urlsplit(value.strip())
    query = parse_qs(parts.query)
    return {
        "host": parts.hostname or "", "port": str(parts.port or ""), "name": unquote(parts.path.lstrip("/")),
        "user": unquote(parts.username or ""), "password": unquote(parts.password or ""),
        "ssl": (query.get("sslmode") or ["false"])[0],
    }


def check_postgres_url(value: str) -> str | None:
    try:
        parts = urlsplit(value.strip())
        parsed = parse_postgres_url(value)
    except ValueError as error:
        return f"is not a valid URL ({error})"
    if parts.scheme not in ("postgres", "postgresql"):
        return "must start with postgres:// or postgresql://"
    missing = [k for k in ("host", "name", "user") if not parsed[k]]
    if missing:
        return f"lacks the {', '.join(missing)} (postgres://user:password@host:5432/database)"
    return None


def check_positive_int(value: str) -> str | None:
    return None if value.isdigit() and int(value) > 0 else "must be a whole number greater than zero"


def split_list(value: str) -> list[str]:
    """`a, b c` -> [a, b, c]; also tolerates the upstream `[ a, b ]` flow-list spelling."""
    value = value.strip()
    if value.startswith("[") and value.endswith("]"):
        value = value[1:-1]
    return [item.strip().strip("\"'") for item in re.split(r"[,\s]+", value) if item.strip().strip("\"'")]


# --------------------------------------------------------------------------- the table

TAILSCALE_DERP_MAP = "https://controlplane.tailscale.com/derpmap/default"
DEFAULT_NAMESERVERS = "1.1.1.1, 1.0.0.1, 2606:4700:4700::1111, 2606:4700:4700::1001"

S, SV, O, L, E = Group.SECRETS, Group.SERVER, Group.OIDC, Group.LITESTREAM, Group.ENTRYPOINT

VARIABLES: tuple[Var, ...] = (
    # secrets and platform
    Var("FLY_APP_NAME", None, "Set by Fly; gives the default server URL `https://<app>.fly.dev`.",
        SV, Required.UNLESS_URL, check=check_dns_name),
    Var("NOISE_PRIVATE_KEY", None,
        "The server's Noise (TS2021) key, `privkey:<64 hex>`; written to a 0600 file. Must never change.",
        S, Required.ALWAYS, secret=True, check=check_noise_key),
    Var("AGE_SECRET_KEY", None,
        "age identity (`AGE-SECRET-KEY-1…`) that encrypts and decrypts the replica; recipient is derived.",
        S, Required.WITH_LITESTREAM, secret=True, check=check_age_key),
    Var("AWS_ACCESS_KEY_ID", None, "S3 access key (set by `fly storage create`).",
        S, Required.WITH_S3, secret=True),
    Var("AWS_SECRET_ACCESS_KEY", None, "S3 secret key (set by `fly storage create`).",
        S, Required.WITH_S3, secret=True),
    Var("AWS_REGION", None, "S3 region (`auto` on Tigris).", S, Required.WITH_S3),
    Var("AWS_ENDPOINT_URL_S3", None, "S3 endpoint (`https://fly.storage.tigris.dev` on Tigris).",
        S, Required.WITH_S3, check=check_http_url),
    Var("BUCKET_NAME", None, "Bucket holding the replica (`headscale.db/`) and `import-db.sqlite`.",
        S, Required.WITH_S3),
    Var("DATABASE_URL", None,
        "PostgreSQL URL (`postgres://user:password@host:5432/db?sslmode=…`; `fly postgres attach` sets it). "
        "Set: the data lives in PostgreSQL instead of SQLite + Litestream, and two or more Machines may run "
        "(one active, the others standing by; README: Highly available deployment).",
        S, secret=True, check=check_postgres_url),
    # control server
    Var("HEADSCALE_SERVER_URL", "https://${FLY_APP_NAME}.fly.dev",
        "Public URL clients use (`--login-server`). Use this or HEADSCALE_DOMAIN_NAME.", SV, check=check_http_url),
    Var("HEADSCALE_DOMAIN_NAME", None,
        "Later spelling: bare host name; the server URL becomes `https://<name>`.", SV, check=check_hostname),
    Var("HEADSCALE_LISTEN_ADDR", "0.0.0.0:8080", "HTTP listener (fly.toml `internal_port`).",
        SV, check=check_host_port),
    Var("HEADSCALE_METRICS_LISTEN_ADDR", "0.0.0.0:9090",
        "Prometheus `/metrics` listener (fly.toml `[metrics]`; never exposed publicly).", SV, check=check_host_port),
    Var("HEADSCALE_LOG_LEVEL", "info", "Server log level: " + ", ".join(LOG_LEVELS) + ".", SV, check=check_log_level),
    Var("HEADSCALE_DNS_BASE_DOMAIN", "tailnet",
        "MagicDNS suffix (`<node>.<base>`); must not contain the server's host name.", SV, check=check_dns_name),
    Var("HEADSCALE_DNS_MAGIC_DNS", "true", "Enable MagicDNS.", SV, check=check_bool),
    Var("HEADSCALE_DNS_NAMESERVERS_GLOBAL", DEFAULT_NAMESERVERS,
        "Resolvers pushed to clients, comma separated (IPs or DoH URLs).", SV, blank=True),
    Var("HEADSCALE_DNS_SEARCH_DOMAINS", "", "Extra search domains, comma separated.", SV),
    Var("HEADSCALE_PREFIXES_V4", "100.64.0.0/10", "IPv4 range for node addresses (empty: none).",
        SV, blank=True, check=_prefix(4, "100.64.0.0/10")),
    Var("HEADSCALE_PREFIXES_V6", "fd7a:115c:a1e0::/48", "IPv6 range for node addresses (empty: none).",
        SV, blank=True, check=_prefix(6, "fd7a:115c:a1e0::/48")),
    Var("HEADSCALE_PREFIXES_ALLOCATION", "random", "Address allocation: `random` or `sequential`.",
        SV, check=_choice("random", "sequential")),
    Var("HEADSCALE_EPHEMERAL_NODE_INACTIVITY_TIMEOUT", "30m",
        "Ephemeral nodes are removed after this long offline (> 65s).", SV, check=check_ephemeral_timeout),
    Var("HEADSCALE_DERP_URLS", TAILSCALE_DERP_MAP,
        "DERP maps to fetch, comma separated (empty: none; then enable the embedded DERP).", SV, blank=True),
    Var("HEADSCALE_DERP_SERVER_ENABLED", "false",
        "Embedded DERP relay on the HTTP port plus STUN over UDP (needs a dedicated IPv4, see fly.example.toml).",
        SV, check=check_bool),
    Var("HEADSCALE_DERP_SERVER_STUN_LISTEN_ADDR", "fly-global-services:3478",
        "UDP address of the embedded STUN server (Fly needs `fly-global-services`).", SV, check=check_host_port),
    Var("HEADSCALE_CONSOLE_ENABLED", "false",
        "Serve the web console at `/admin` on the app's domain (sign in with an API key from "
        "`fly ssh console -C \"headscale apikeys create\"`).", SV, check=check_bool),
    # OIDC
    Var("HEADSCALE_OIDC_ISSUER", None, "OIDC issuer URL; setting it enables OIDC login.", O, check=check_http_url),
    Var("HEADSCALE_OIDC_CLIENT_ID", None, "OIDC client id.", O, Required.WITH_OIDC),
    Var("HEADSCALE_OIDC_CLIENT_SECRET", None,
        "OIDC client secret; written to a 0600 file, the config only names the file.", O, Required.WITH_OIDC,
        secret=True),
    Var("HEADSCALE_OIDC_SCOPES", "openid, profile, email", "Scopes requested, comma separated.", O),
    Var("HEADSCALE_OIDC_ALLOWED_DOMAINS", "", "Only these e-mail domains may log in, comma separated.", O),
    Var("HEADSCALE_OIDC_ALLOWED_GROUPS", "", "Only members of these groups may log in, comma separated.", O),
    Var("HEADSCALE_OIDC_ALLOWED_USERS", "", "Only these e-mail addresses may log in, comma separated.", O),
    Var("HEADSCALE_OIDC_ALLOWED_USERS_FLY", "",
        "Same as HEADSCALE_OIDC_ALLOWED_USERS and wins over it when set (handy as a Fly secret).", O),
    Var("HEADSCALE_OIDC_EXPIRY", "180d",
        "Key expiry of OIDC-registered nodes (rendered as 0.29's `node.expiry`; `0` = never).", O,
        check=check_expiry),
    Var("HEADSCALE_OIDC_USE_EXPIRY_FROM_TOKEN", "false", "Use the ID token's expiry instead.", O, check=check_bool),
    Var("HEADSCALE_OIDC_ONLY_START_IF_OIDC_IS_AVAILABLE", "true",
        "Refuse to start while the issuer is unreachable.", O, check=check_bool),
    Var("HEADSCALE_OIDC_EMAIL_VERIFIED_REQUIRED", "true", "Reject unverified e-mail addresses.", O,
        check=check_bool),
    Var("HEADSCALE_OIDC_PKCE_ENABLED", "false", "Use PKCE.", O, check=check_bool),
    Var("HEADSCALE_OIDC_PKCE_METHOD", "S256", "PKCE method: `S256` or `plain`.", O, check=_choice("S256", "plain")),
    # Litestream
    Var("LITESTREAM_ENABLED", "true",
        "Restore at boot and replicate continuously. `false`: data is lost on every restart.", L, check=check_bool),
    Var("LITESTREAM_SYNC_INTERVAL", "10s", "How often WAL changes are shipped (the data-loss window).",
        L, check=check_positive_go_duration),
    Var("LITESTREAM_RETENTION", "24h", "How long old snapshots and WAL are kept.", L, check=check_positive_go_duration),
    Var("LITESTREAM_RETENTION_CHECK_INTERVAL", "1h", "How often retention is enforced.",
        L, check=check_positive_go_duration),
    Var("LITESTREAM_VALIDATION_INTERVAL", "12h", "How often the replica is restored and checksummed (`0`: never).",
        L, check=check_go_duration),
    Var("LITESTREAM_RESTORE_ATTEMPTS", "5",
        "Restore attempts (1 s, 2 s, 4 s … apart) before the boot stops.", L, check=check_positive_int),
    # entrypoint
    Var("IMPORT_DATABASE", "false",
        "`true`: import `import-db.sqlite` from the bucket once (recorded in `import-db.sqlite.imported`).",
        E, check=check_bool),
    Var("ENTRYPOINT_DEBUG", "false", "Print the rendered configuration (secrets masked).", E, check=check_bool),
    Var("ENTRYPOINT_IDLE", "false",
        "Sleep instead of starting (also after an error) so `fly ssh console` can get in.", E, check=check_bool),
    Var("ENTRYPOINT_ROOT", "/", "Prefix of every path the entrypoint writes (tests use a temporary directory).", E),
)

BY_NAME: dict[str, Var] = {v.name: v for v in VARIABLES}
OWN_PREFIXES = ("HEADSCALE_", "LITESTREAM_", "ENTRYPOINT_")


class InvalidEnvironment(Exception):
    """Raised with every problem found; each problem is one line that names the variable."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Settings:
    """The validated environment, in the shapes the templates need."""

    values: Mapping[str, str]  # every table variable, defaults applied ('' when unset and no default)
    server_url: str
    litestream: bool
    import_database: bool
    debug: bool
    idle: bool
    oidc: bool
    age_recipient: str | None
    postgres: Mapping[str, str] | None = None  # parsed DATABASE_URL (password included: never render it)

    def __getitem__(self, name: str) -> str:
        return self.values[name]

    def flag(self, name: str) -> bool:
        return as_bool(self.values[name])

    def list(self, name: str) -> list[str]:
        return split_list(self.values[name])

    @property
    def secrets(self) -> list[str]:
        """Values that must never be printed (for masking)."""
        return [self.values[v.name] for v in VARIABLES if v.secret and self.values.get(v.name)]


def read(environ: Mapping[str, str]) -> dict[str, str]:
    """Every variable of the table with its default applied; unset without default -> ''."""
    values: dict[str, str] = {}
    for var in VARIABLES:
        value = environ.get(var.name)
        if value is None or (value == "" and not var.blank):
            value = var.default or ""
        values[var.name] = value
    app = values["FLY_APP_NAME"]
    if "${FLY_APP_NAME}" in values["HEADSCALE_SERVER_URL"]:
        values["HEADSCALE_SERVER_URL"] = (
            values["HEADSCALE_SERVER_URL"].replace("${FLY_APP_NAME}", app) if app else ""
        )
    return values


# Variables of earlier appliance versions whose setting no longer exists, and why.
RETIRED = {
    "HEADSCALE_OIDC_STRIP_EMAIL_DOMAIN": (
        "headscale 0.26 removed oidc.strip_email_domain: a signed-in user is named by the provider's "
        "preferred_username (else the verified e-mail address); unset it"),
}


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """Names that look like ours but are not in the table (likely typos)."""
    return sorted(n for n in environ if n.startswith(OWN_PREFIXES) and n not in BY_NAME and n not in RETIRED)


def retired_variables(environ: Mapping[str, str]) -> list[str]:
    """One line per retired variable that is set: what replaced it."""
    return [f"{n} is no longer used: {RETIRED[n]}" for n in sorted(RETIRED) if n in environ]


def validate(environ: Mapping[str, str]) -> Settings:
    values = read(environ)
    problems: list[str] = []
    postgres = bool(values["DATABASE_URL"])
    litestream = as_bool(values["LITESTREAM_ENABLED"]) if check_bool(values["LITESTREAM_ENABLED"]) is None else True
    if postgres:
        if environ.get("LITESTREAM_ENABLED") and litestream:
            problems.append("LITESTREAM_ENABLED=true and DATABASE_URL are both set: with PostgreSQL there is "
                            "no SQLite file to replicate; unset LITESTREAM_ENABLED")
        litestream = False
        if environ.get("IMPORT_DATABASE") and as_bool(environ.get("IMPORT_DATABASE", "")):
            problems.append("IMPORT_DATABASE=true and DATABASE_URL are both set: copy an SQLite database into "
                            "PostgreSQL with `headscale database copy --to $DATABASE_URL` instead")
    import_db = as_bool(values["IMPORT_DATABASE"]) if check_bool(values["IMPORT_DATABASE"]) is None else False
    oidc = bool(values["HEADSCALE_OIDC_ISSUER"])
    explicit_url = bool(environ.get("HEADSCALE_SERVER_URL"))
    domain = values["HEADSCALE_DOMAIN_NAME"]

    def needed(var: Var) -> bool:
        return {
            Required.NO: False,
            Required.ALWAYS: True,
            Required.WITH_LITESTREAM: litestream,
            Required.WITH_S3: litestream or import_db,
            Required.WITH_OIDC: oidc,
            Required.UNLESS_URL: not explicit_url and not domain,
        }[var.required]

    for var in VARIABLES:
        value = values[var.name]
        if value == "":
            if needed(var):
                why = "" if var.required is Required.ALWAYS else f" ({var.required.value})"
                problems.append(f"{var.name} is required{why}: {_first_sentence(var.help)}")
            continue
        if var.check is not None:
            reason = var.check(value)
            if reason:
                problems.append(f"{var.name} {reason}")

    # server URL: HEADSCALE_SERVER_URL, or https://HEADSCALE_DOMAIN_NAME, or https://<app>.fly.dev
    server_url = values["HEADSCALE_SERVER_URL"]
    if domain and check_hostname(domain) is None:
        from_domain = f"https://{domain}"
        if explicit_url and server_url.rstrip("/") != from_domain:
            problems.append("HEADSCALE_SERVER_URL and HEADSCALE_DOMAIN_NAME disagree: set only one of them")
        server_url = from_domain
    server_url = server_url.rstrip("/")
    host = urlsplit(server_url).hostname or ""
    base = values["HEADSCALE_DNS_BASE_DOMAIN"].lower().rstrip(".")
    if host and base and (host == base or host.endswith("." + base)):
        problems.append(
            f"HEADSCALE_DNS_BASE_DOMAIN must not contain the server's host name ({host}); "
            "clients would resolve the server inside the tailnet"
        )
    if not values["HEADSCALE_PREFIXES_V4"] and not values["HEADSCALE_PREFIXES_V6"]:
        problems.append("HEADSCALE_PREFIXES_V4 and HEADSCALE_PREFIXES_V6 are both empty: nodes need addresses")
    if as_bool(values["HEADSCALE_DNS_MAGIC_DNS"]) and not base:
        problems.append("HEADSCALE_DNS_BASE_DOMAIN is required while HEADSCALE_DNS_MAGIC_DNS is true")
    if not values["HEADSCALE_DERP_URLS"].strip() and not as_bool(values["HEADSCALE_DERP_SERVER_ENABLED"]):
        problems.append("HEADSCALE_DERP_URLS is empty and HEADSCALE_DERP_SERVER_ENABLED is false: clients get no relay")
    if problems:
        raise InvalidEnvironment(problems)

    recipient = None
    if values["AGE_SECRET_KEY"]:
        import pyrage

        recipient = str(pyrage.x25519.Identity.from_str(values["AGE_SECRET_KEY"].strip()).to_public())
    return Settings(
        values=values,
        server_url=server_url,
        litestream=litestream,
        import_database=import_db,
        debug=as_bool(values["ENTRYPOINT_DEBUG"]),
        idle=as_bool(values["ENTRYPOINT_IDLE"]),
        oidc=oidc,
        age_recipient=recipient,
        postgres=parse_postgres_url(values["DATABASE_URL"]) if postgres else None,
    )


def _first_sentence(text: str) -> str:
    return text.split(". ")[0].rstrip(".") + "."


# --------------------------------------------------------------------------- README table


def markdown_table() -> str:
    lines: list[str] = []
    for group in Group:
        lines += [f"**{group.value}**", "", "| Variable | Default | Required | Secret | Meaning |",
                  "|---|---|---|---|---|"]
        for var in (v for v in VARIABLES if v.group is group):
            default = f"`{var.default}`" if var.default else ""
            lines.append(
                f"| `{var.name}` | {default} | {var.required.value} | {'yes' if var.secret else ''} | {var.help} |"
            )
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown_table())
