"""Removed and renamed keys: older headscale configurations mapped onto today's keys.

The configurations of the headscale 0.22 generation (``ip_prefixes``, ``db_type``/``db_path``,
``dns_config.*``, ``acl_policy_path``, ...) still start: each old key's value is used for the
key that replaced it, with one warning naming that key. Setting both the old and the new key
to different values is an error (which one was meant?); the same value only warns.

``translate`` works on the flat ``{dotted key: raw value}`` dict the loader builds (file, env
and overrides already layered) and keeps the order of the keys, so that ``migrate`` can print
a file in today's keys (``headscale configtest --migrate``) in the order it was written.
"""

from __future__ import annotations

from typing import Any

import yaml

from app.config.settings import (
    BY_NAME,
    FATAL,
    FATAL_UNLESS_NEW,
    IGNORED,
    MOVED,
    RENAMED,
    SECTIONS,
    Setting,
)

MIGRATE_HINT = "`headscale configtest --migrate` prints the file in today's keys"


def _same(setting: Setting | None, a: Any, b: Any) -> bool:
    """Do two raw values mean the same for ``setting``? (unparseable values never do)"""
    if setting is None:
        return a == b
    try:
        return setting.type.parse(a, False) == setting.type.parse(b, False)
    except ValueError:
        return False


def translate(raw: dict[str, Any], origin: dict[str, str]) -> tuple[dict[str, Any], list[str], list[str]]:
    """Apply every ``removed=`` row of the settings table; returns (new raw, problems, warnings).

    ``origin`` (key → "" for the file, the HEADSCALE_* name, or "override") is updated for the
    keys that receive an old key's value, so that a bad value is reported against both names.
    """
    problems: list[str] = []
    warnings: list[str] = []
    old_keys = [k for k in raw if k in BY_NAME and BY_NAME[k].removed is not None]
    out: dict[str, Any] = {}
    legacy_dns = any(k.startswith("dns_config.") for k in old_keys)
    for key, value in raw.items():
        s = BY_NAME.get(key)
        r = s.removed if s is not None else None
        if s is None or r is None:  # today's key (or an unknown one, kept for --migrate)
            out[key] = value
            continue
        src = f" (from {origin[key]})" if origin.get(key, "").startswith("HEADSCALE_") else ""
        new = r.replacement
        hint = f" {r.hint}" if r.hint else ""
        if r.action == FATAL:
            use = f" Use {new} instead." if new else ""
            problems.append(f"{key}{src}: this key has been removed.{use}{hint}".rstrip())
        elif r.action == FATAL_UNLESS_NEW:
            if new in raw:
                warnings.append(f"{key} is deprecated and ignored because {new} is set; remove it")
            else:
                problems.append(f"{key}{src}: this key has been removed. Use {new} instead.{hint}")
        elif r.action == MOVED:
            warnings.append(f"{key} is deprecated, use {new} instead; its value is used for now")
            if new not in raw:
                out[new] = value
                origin[new] = origin.get(key, "") or key
        elif r.action == IGNORED:
            see = f"; see {new}" if new else ""
            warnings.append(f"{key} is no longer read (removed in headscale {r.since}){see}.{hint}")
        elif r.action == RENAMED:
            _rename(key, value, s, raw, out, origin, problems, warnings, src)
    if legacy_dns and "dns.magic_dns" not in raw and "dns_config.magic_dns" not in raw:
        # headscale 0.22 turned MagicDNS on only when dns_config.magic_dns said so.
        out["dns.magic_dns"] = False
        origin["dns.magic_dns"] = "dns_config"
        warnings.append("dns_config has no magic_dns: MagicDNS stays off as in headscale 0.22 "
                        "(dns.magic_dns: false)")
    if (any(k in ("acl_policy_path", "ip_prefixes", "db_type", "db_path") for k in old_keys)
            and not any(k.startswith(("dns.", "dns_config.")) for k in raw)):
        # A 0.22 file without dns_config gave nodes no DNS settings at all.
        out["dns.magic_dns"] = False
        out["dns.override_local_dns"] = False
        warnings.append("no dns section in this headscale 0.22-style file: nodes get no DNS "
                        "settings, as then (dns.magic_dns: false, dns.override_local_dns: false)")
    return out, problems, warnings


def _rename(key: str, value: Any, s: Setting, raw: dict[str, Any], out: dict[str, Any],
            origin: dict[str, str], problems: list[str], warnings: list[str], src: str) -> None:
    r = s.removed
    assert r is not None
    if r.convert is not None:
        try:
            mapped = r.convert(s.type.parse(value, origin.get(key, "").startswith("HEADSCALE_")))
        except ValueError as e:
            hint = f" {r.hint}" if r.hint else ""
            problems.append(f"{key}{src}: {e}.{hint}")
            return
    else:
        assert r.replacement is not None
        mapped = {r.replacement: value}
    if not mapped:
        hint = f" {r.hint}" if r.hint else ""
        warnings.append(f"{key} is no longer read (removed in headscale {r.since}); its value is "
                        f"the default, remove it.{hint}")
        return
    clash = [k for k, v in mapped.items() if k in raw and not _same(BY_NAME.get(k), raw[k], v)]
    if clash:
        problems.append(f"{key}{src}: renamed to {', '.join(clash)} in headscale {r.since}, and "
                        f"{', '.join(clash)} is also set to a different value; keep only "
                        f"{', '.join(clash)} and remove {key}")
        return
    names = ", ".join(mapped)
    if all(k in raw for k in mapped):
        warnings.append(f"{key} is the headscale {r.since}-era name of {names}, which is also set "
                        f"(to the same value); remove {key}")
        return
    for k, v in mapped.items():
        if k not in raw:
            out[k] = v
            origin[k] = origin.get(key, "") or key
    warnings.append(f"{key} was renamed to {names} in headscale {r.since}; its value is used for "
                    f"{names} (rename it: {MIGRATE_HINT})")


# --- configtest --migrate ---------------------------------------------------------------------


def _flatten(node: dict, prefix: str, out: dict[str, Any]) -> None:
    for k, v in node.items():
        name = str(k).lower()
        key = f"{prefix}.{name}" if prefix else name
        if key not in BY_NAME and key in SECTIONS and isinstance(v, dict):
            _flatten(v, key, out)
        elif key not in BY_NAME and isinstance(v, dict) and v:
            _flatten(v, key, out)  # an unknown section: keep its keys as they are
        else:
            out[key] = v


def migrate(data: dict) -> tuple[dict, list[str], list[str]]:
    """The file's own keys (no defaults, no environment) rewritten in today's keys, in their
    order; unknown keys are kept as written. Returns (nested data, problems, warnings)."""
    flat: dict[str, Any] = {}
    _flatten(data, "", flat)
    flat = {k: v for k, v in flat.items() if v is not None or k not in BY_NAME}
    merged, problems, warnings = translate(flat, {k: "" for k in flat})
    nested: dict[str, Any] = {}
    for k, v in merged.items():
        if isinstance(v, int) and hasattr(v, "raw_text"):  # the loader's literal-keeping int
            v = v.raw_text if BY_NAME.get(k) and BY_NAME[k].type.name == "octal mode" else int(v)
        node = nested
        parts = k.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = v
    return nested, problems, warnings


def migrate_text(data: dict) -> str:
    nested, _, _ = migrate(data)
    return yaml.safe_dump(nested, sort_keys=False, default_flow_style=False, allow_unicode=True)
