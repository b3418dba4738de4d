"""The loaded configuration: a frozen tree of sections that mirrors the YAML structure.

``cfg.server_url``, ``cfg.derp.server.region_id``, ``cfg.node.ephemeral.inactivity_timeout``
(float seconds). Names that are Python keywords get a trailing underscore
(``cfg.dns.nameservers.global_``, ``cfg.database.postgres.pass_``); ``getattr(x, "global")``
works as well. Lists are tuples, maps are read-only mappings; nothing can be assigned.
"""

from __future__ import annotations

import keyword
from collections.abc import Iterator
from types import MappingProxyType
from typing import Any

from app.config.settings import ACTIVE, BY_NAME, SECRET_KEYS

MASK = "***"
_MISSING = object()


class ConfigError(Exception):
    """The configuration cannot be used. ``problems`` lists every problem found, one line each."""

    def __init__(self, problems: list[str], warnings: list[str] | None = None) -> None:
        self.problems = list(problems)
        self.warnings = list(warnings or [])
        n = len(self.problems)
        head = f"invalid configuration ({n} problem{'s' if n != 1 else ''})"
        super().__init__(head + ":\n" + "\n".join(f"  - {p}" for p in self.problems))


class Section:
    """One level of the configuration tree. Read-only."""

    __slots__ = ("_path", "_values")

    def __init__(self, path: str, values: dict[str, Any]) -> None:
        object.__setattr__(self, "_path", path)
        object.__setattr__(self, "_values", values)

    def __getattr__(self, name: str) -> Any:
        values = object.__getattribute__(self, "_values")
        if name in values:
            return values[name]
        if name.endswith("_") and keyword.iskeyword(name[:-1]) and name[:-1] in values:
            return values[name[:-1]]
        path = object.__getattribute__(self, "_path")
        where = f"{path}.{name}" if path else name
        raise AttributeError(f"no configuration key {where!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("configuration is read-only")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("configuration is read-only")

    def __dir__(self) -> list[str]:
        return [k + "_" if keyword.iskeyword(k) else k for k in self._values]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __contains__(self, name: object) -> bool:
        return name in self._values

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Section) and self._path == other._path
                and _plain(self, False) == _plain(other, False))

    def __hash__(self) -> int:
        return hash(self._path)

    def __repr__(self) -> str:
        return f"<Section {self._path or '(root)'}: {', '.join(self._values)}>"

    def as_dict(self, masked: bool = True) -> dict[str, Any]:
        """Plain nested dicts with YAML-level values (durations as "30m"), loadable again.
        Secrets are replaced by "***" unless ``masked=False``."""
        return _plain(self, masked)


class Config(Section):
    """The whole configuration. Besides the YAML keys it has ``get(dotted)``, ``as_dict()``,
    ``source_path`` (file used, or None), ``warnings`` (tuple of str, for the server to log)
    and ``problems`` (always empty unless loaded with ``validate=False``)."""

    __slots__ = ("problems", "source_path", "warnings")

    def __init__(
        self,
        values: dict[str, Any],
        source_path: str | None = None,
        warnings: tuple[str, ...] = (),
        problems: tuple[str, ...] = (),
    ) -> None:
        super().__init__("", values)
        object.__setattr__(self, "source_path", source_path)
        object.__setattr__(self, "warnings", tuple(warnings))
        object.__setattr__(self, "problems", tuple(problems))

    def get(self, key: str, default: Any = _MISSING) -> Any:
        """``cfg.get("dns.nameservers.global")``; a section path returns the Section."""
        node: Any = self
        for part in key.split("."):
            if isinstance(node, Section) and part in node._values:
                node = node._values[part]
            elif default is not _MISSING:
                return default
            else:
                raise KeyError(key)
        return node

    def __repr__(self) -> str:
        return f"<Config from {self.source_path or 'defaults'}>"


def build_tree(flat: dict[str, Any]) -> dict[str, Any]:
    """{"a.b.c": v} → nested dicts of Sections (only active keys)."""
    root: dict[str, Any] = {}
    for setting in ACTIVE:
        parts = setting.attr_path
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = flat[setting.name]
    return root


def freeze(tree: dict[str, Any], path: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in tree.items():
        sub = f"{path}.{k}" if path else k
        out[k] = Section(sub, freeze(v, sub)) if isinstance(v, dict) else v
    return out


def _plain(section: Section, masked: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in section._values.items():
        dotted = f"{section._path}.{k}" if section._path else k
        if isinstance(v, Section):
            out[k] = _plain(v, masked)
            continue
        setting = BY_NAME[dotted]
        if masked and dotted in SECRET_KEYS and v:
            out[k] = MASK
        else:
            out[k] = setting.type.dump(v)
        if isinstance(out[k], MappingProxyType):
            out[k] = dict(out[k])
    return out
