"""Loading: find the file → read it → layer env and overrides → removed keys → parse → validate.

Precedence, highest first (as viper): ``overrides`` > ``HEADSCALE_*`` environment > file >
defaults from the settings table.
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from app.config import legacy
from app.config import validate as validation
from app.config.model import Config, ConfigError, build_tree, freeze
from app.config.settings import ACTIVE, BY_NAME, SECTIONS, Setting, env_names

CONFIG_ENV = "HEADSCALE_CONFIG"
FILE_NAMES = ("config.json", "config.yaml", "config.yml")  # viper tries json before yaml


def default_search_dirs(env: Mapping[str, str]) -> list[str]:
    home = env.get("HOME") or os.path.expanduser("~")
    return ["/etc/headscale", os.path.join(home, ".headscale"), "."]


def find_config_file(env: Mapping[str, str], search_dirs: Sequence[str] | None = None) -> str | None:
    """``$HEADSCALE_CONFIG`` if set, else the first config.{json,yaml,yml} in the search dirs."""
    if env.get(CONFIG_ENV):
        return env[CONFIG_ENV]
    for d in default_search_dirs(env) if search_dirs is None else search_dirs:
        for name in FILE_NAMES:
            candidate = os.path.join(d, name)
            if os.path.isfile(candidate):
                return candidate
    return None


def load_config(
    path: str | None = None,
    env: Mapping[str, str] | None = None,
    *,
    overrides: dict | None = None,
    validate: bool = True,
    search_dirs: Sequence[str] | None = None,
) -> Config:
    """Load, parse and validate the configuration.

    ``path``: the file (as ``-c``); None searches ``$HEADSCALE_CONFIG``, then config.json /
    config.yaml in /etc/headscale, ~/.headscale and the current directory; no file at all means
    defaults. ``env``: the environment (default ``os.environ``). ``overrides``: dotted or nested
    keys that win over everything. Raises :class:`ConfigError` listing every problem. With
    ``validate=False`` only a missing or unreadable file raises: unusable values fall back to
    their defaults and the problems are kept in ``cfg.problems`` (the CLI uses this: it only
    needs a few keys).
    """
    env = os.environ if env is None else env
    if path is None:
        path = find_config_file(env, search_dirs)
    data = read_file(path) if path is not None else {}  # an unreadable file is always fatal
    return build_config(data, env, overrides=overrides, source_path=path, validate=validate)


def dev_config(data_dir: str, *, overrides: dict | None = None) -> Config:
    """The embedded development configuration of ``make run``: everything under ``data_dir``,
    loopback listeners, no external DERP map, policy in the database. Environment is ignored."""
    d = os.path.abspath(data_dir)
    dev = {
        "server_url": "http://127.0.0.1:8080",
        "listen_addr": "127.0.0.1:8080",
        "metrics_listen_addr": "127.0.0.1:9090",
        "noise.private_key_path": os.path.join(d, "noise_private.key"),
        "database.sqlite.path": os.path.join(d, "db.sqlite"),
        "derp.server.enabled": False,
        "derp.server.private_key_path": os.path.join(d, "derp_server_private.key"),
        "derp.urls": [],
        "derp.auto_update_enabled": False,
        "tls_letsencrypt_cache_dir": os.path.join(d, "cache"),
        "unix_socket": os.path.join(d, "headscale.sock"),
        "policy.mode": "database",
        "dns.magic_dns": True,
        "dns.base_domain": "tailnet.internal",
        "dns.override_local_dns": False,  # keep the developer's own DNS working
        "disable_check_updates": True,
        "console.enabled": True,
    }
    dev.update(_flatten_overrides(overrides or {}, problems=[]))
    return build_config({}, {}, overrides=dev, source_path=None, validate=True)


# --- reading ----------------------------------------------------------------------------------


class _RawInt(int):
    """An int that remembers how it was written (so unix_socket_permission: 0770 stays octal)."""

    raw_text: str


class _Loader(yaml.SafeLoader):
    pass


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    value = _RawInt(yaml.SafeLoader.construct_yaml_int(loader, node))
    value.raw_text = node.value
    return value


_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)


def read_file(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise ConfigError([f"config file {path}: not found"]) from None
    except IsADirectoryError:
        raise ConfigError([f"config file {path}: is a directory"]) from None
    except OSError as e:
        raise ConfigError([f"config file {path}: cannot be read ({e.strerror})"]) from None
    try:
        if path.endswith(".json"):
            data = json.loads(text) if text.strip() else {}
        else:
            data = yaml.load(text, Loader=_Loader)
    except json.JSONDecodeError as e:
        raise ConfigError([f"config file {path}: invalid JSON at line {e.lineno}: {e.msg}"]) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        reason = getattr(e, "problem", None) or "syntax error"
        raise ConfigError([f"config file {path}: invalid YAML{where}: {reason}"]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([f"config file {path}: the top level must be a mapping of keys"])
    return data


# --- layering ---------------------------------------------------------------------------------


def _walk(node: dict, prefix: str, out: dict[str, Any], unknown: list[str], problems: list[str]) -> None:
    for k, v in node.items():
        name = str(k).lower()  # viper's keys are case-insensitive
        key = f"{prefix}.{name}" if prefix else name
        if key in BY_NAME:
            if v is not None:
                out[key] = v
        elif key in SECTIONS:
            if isinstance(v, dict):
                _walk(v, key, out, unknown, problems)
            elif v is not None:
                problems.append(f"{key}: expected a section (a mapping of keys)")
        else:
            unknown.append(key)


def _flatten_overrides(overrides: dict, problems: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    unknown: list[str] = []
    nested: dict = {}
    for k, v in overrides.items():  # dotted keys → nested, then one walk
        node = nested
        parts = str(k).split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = v
    _walk(nested, "", out, unknown, problems)
    problems.extend(f"override {k}: unknown configuration key" for k in unknown)
    return out


def _unknown_warning(key: str) -> str:
    names = [s.name for s in ACTIVE]
    close = difflib.get_close_matches(key, names, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"unknown configuration key {key!r} is ignored{hint}"


def build_config(
    data: dict,
    env: Mapping[str, str],
    *,
    overrides: dict | None = None,
    source_path: str | None = None,
    validate: bool = True,
) -> Config:
    problems: list[str] = []
    warnings: list[str] = []
    raw: dict[str, Any] = {}
    origin: dict[str, str] = {}

    unknown: list[str] = []
    _walk(data, "", raw, unknown, problems)
    warnings.extend(_unknown_warning(k) for k in unknown)
    origin.update({k: "" for k in raw})

    for name, setting in env_names().items():
        value = env.get(name)
        if value:  # viper ignores empty variables
            raw[setting.name] = value
            origin[setting.name] = name

    for k, v in _flatten_overrides(overrides or {}, problems).items():
        raw[k] = v
        origin[k] = "override"

    raw, old_problems, old_warnings = legacy.translate(raw, origin)
    problems.extend(old_problems)
    warnings.extend(old_warnings)

    values: dict[str, Any] = {}
    bad: set[str] = set()
    for s in ACTIVE:
        label = s.name if not origin.get(s.name) or origin[s.name] == "override" else f"{s.name} (from {origin[s.name]})"
        value, problem = _parse_one(s, raw.get(s.name, s.default), from_env=origin.get(s.name, "").startswith("HEADSCALE_"))
        if problem is not None:
            problems.append(f"{label}: {problem}")
            bad.add(s.name)
            value, _ = _parse_one(s, s.default, from_env=False)
        values[s.name] = value

    if source_path:
        base = os.path.dirname(os.path.abspath(source_path))
        for s in ACTIVE:
            if s.type.is_path and values[s.name] and not os.path.isabs(values[s.name]):
                values[s.name] = os.path.normpath(os.path.join(base, values[s.name]))

    cross_problems, cross_warnings = validation.validate(values, bad, env)
    problems.extend(cross_problems)
    warnings.extend(cross_warnings)

    if problems and validate:
        raise ConfigError(problems, warnings)
    return Config(freeze(build_tree(values)), source_path, tuple(warnings), tuple(problems))


def _parse_one(s: Setting, raw: Any, from_env: bool) -> tuple[Any, str | None]:
    try:
        value = s.type.parse(raw, from_env)
    except ValueError as e:
        return None, str(e)
    if s.check is not None:
        msg = s.check(value)
        if msg:
            return None, msg
    if s.choices is not None and value not in s.choices:
        got = "" if s.secret else f" (got {value!r})"
        return None, f"must be one of {', '.join(s.choices)}{got}"
    return value, None
