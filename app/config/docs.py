"""Render docs/config.md from the settings table (``python -m app.config docs > docs/config.md``).

tests/test_config_docs.py fails when the committed file differs from this output.
"""

from __future__ import annotations

import json
from typing import Any

from app.config.settings import ACTIVE, FATAL, FATAL_UNLESS_NEW, IGNORED, MOVED, REMOVED, RENAMED, Setting

INTRO = """\
# Configuration reference

<!-- Generated from app/config/settings.py by `python -m app.config docs`; do not edit. -->

The server reads headscale 0.29's `config.yaml`: same keys, same defaults (headscale's code
default where it has one, else the value of its `config-example.yaml`). Exceptions are noted
per key.

**Where the file is looked for.** `-c/--config PATH`, else `$HEADSCALE_CONFIG`, else the first
of `config.json`, `config.yaml`, `config.yml` in `/etc/headscale/`, `~/.headscale/` and the
current directory. No file at all is allowed: the defaults below apply.

**Environment.** Every key can be set with `HEADSCALE_` + the key path upper-cased with `.`
replaced by `_` (`dns.base_domain` → `HEADSCALE_DNS_BASE_DOMAIN`). The environment wins over
the file. Lists are split on commas and whitespace (`"1.1.1.1, 1.0.0.1"`) or given as a flow
list (`[a, b]`); maps and record lists are JSON. Empty variables are ignored.

**Values.** Durations are Go-style (`800ms`, `30s`, `1h30m`) and also take `d`, `w` and `y`
(`90d`); `0` means zero/off. Relative *path* values are relative to the config file's
directory.

**Checking.** `headscale configtest` loads the file and lists every problem at once.
Unknown keys only warn (headscale ignores them). Keys of older headscale releases (the 0.22-era
tutorials: `ip_prefixes`, `db_path`, `dns_config`, `acl_policy_path`, ...) are read as today's
keys with a warning naming the new key; `headscale configtest --migrate` prints the file in
today's keys. Keys that cannot be mapped fail (see the end).

**In Python.** `load_config()` returns a frozen `Config` mirroring the YAML:
`cfg.derp.server.region_id`, `cfg.node.ephemeral.inactivity_timeout` (float seconds),
`cfg.dns.nameservers.global_` (`global` is a keyword; `getattr(ns, "global")` works too),
`cfg.get("dns.base_domain")`, `cfg.as_dict(masked=True)`.
"""

TYPE_NOTES = {"duration": "duration", "path": "path"}


def _fmt_default(s: Setting) -> str:
    value: Any = s.default
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (list, dict)):
        text = json.dumps(value) if value else ("[]" if isinstance(value, list) else "{}")
    elif value == "":
        text = '""'
    else:
        text = str(value)
    return f"`{text}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _row(s: Setting) -> str:
    notes = []
    if s.choices:
        notes.append("One of: " + ", ".join(f"`{c}`" for c in s.choices) + ".")
    if s.secret:
        notes.append("Secret: masked in dumps and never printed.")
    if s.compat_only:
        notes.append("*Accepted for headscale compatibility; no effect in this server.*")
    desc = " ".join([s.help, *notes])
    return f"| `{s.name}` | {s.type.name} | {_cell(_fmt_default(s))} | `{s.env_name}` | {_cell(desc)} |"


ACTION_TEXT = {
    FATAL: "error",
    FATAL_UNLESS_NEW: "error (warning if the new key is also set)",
    MOVED: "warning; value moves to the new key",
    IGNORED: "warning; value ignored",
    RENAMED: "warning; value used for the new key (error if the new key has a different value)",
}


def render_markdown() -> str:
    out = [INTRO]
    groups: dict[str, list[Setting]] = {}
    for s in ACTIVE:
        top = s.name.split(".")[0] if "." in s.name else "(top level)"
        groups.setdefault(top, []).append(s)
    for top, rows in groups.items():
        out.append(f"\n## {top}\n")
        out.append("| Key | Type | Default | Environment | Description |")
        out.append("|---|---|---|---|---|")
        out.extend(_row(s) for s in rows)
    out.append("\n## Removed and renamed keys\n")
    out.append("| Key | Since headscale | When present | Use instead |")
    out.append("|---|---|---|---|")
    for s in REMOVED:
        r = s.removed
        assert r is not None
        instead = f"`{r.replacement}`" if r.replacement else "—"
        if r.hint:
            instead += " " + r.hint
        out.append(f"| `{s.name}` | {r.since} | {ACTION_TEXT[r.action]} | {_cell(instead)} |")
    return "\n".join(out) + "\n"
