"""Policies written for older headscale releases (the 0.22 generation).

Two things those policies do that today's syntax does not:

* YAML files (headscale chose the format by the file extension, ``.yaml``/``.yml``):
  ``yaml_to_json`` turns such a file into JSON text that the HuJSON parser reads like any other.
* User names without ``@`` (the "namespace" style: ``"src": ["default"]``,
  ``"dst": ["guest:*"]``). Today a bare word is a host name from ``hosts``; when it is not one,
  ``bare_user_names`` rewrites it to the user reference ``default@`` in place and returns one
  warning per rewrite suggesting that spelling. Words defined in ``hosts`` stay hosts.
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from .ipset import parse_prefix
from .ports import PortError, parse_ports, split_dst

__all__ = ["bare_user_names", "is_yaml_name", "yaml_to_json"]

# A headscale 0.22 user ("namespace") name: lower-case letters, digits, '-' and '.'.
_USER_NAME = re.compile(r"[a-z0-9][a-z0-9.-]*")


def is_yaml_name(filename: str) -> bool:
    return filename.lower().endswith((".yaml", ".yml"))


def yaml_to_json(text: str) -> str:
    """YAML policy text → JSON text. Raises ValueError with the line of a syntax error."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ValueError(f"invalid YAML{where}: {getattr(exc, 'problem', None) or 'syntax error'}") from None
    return json.dumps(doc if doc is not None else {}, default=str)


def _field(obj: Any, name: str) -> Any:
    if not isinstance(obj, dict):
        return None
    for k, v in obj.items():
        if isinstance(k, str) and k.lower() == name.lower():
            return v
    return None


_PREFIX_WORDS = {"autogroup", "group", "tag", "user"}  # "autogroup:self" misread as name:ports


def _is_bare_user(text: str, hosts: set[str]) -> bool:
    if text in hosts or text.lower() in _PREFIX_WORDS or not _USER_NAME.fullmatch(text):
        return False
    try:
        parse_prefix(text)
    except ValueError:
        return True
    return False


def bare_user_names(doc: Any) -> list[str]:
    """Rewrite bare user names in ``doc`` (a parsed policy object) to ``name@``; one warning
    per rewritten place, with its path into the document."""
    if not isinstance(doc, dict):
        return []
    hosts = {k for k in (_field(doc, "hosts") or {}) if isinstance(k, str)} \
        if isinstance(_field(doc, "hosts"), dict) else set()
    warnings: list[str] = []

    def fix_list(items: Any, path: str, with_port: bool = False) -> None:
        if not isinstance(items, list):
            return
        for i, text in enumerate(items):
            if not isinstance(text, str):
                continue
            alias, ports = text.strip(), None
            if with_port:
                try:
                    alias, ports = split_dst(alias)
                    parse_ports(ports)
                except PortError:
                    continue  # not "name:ports": left for the parser to report
            if _is_bare_user(alias, hosts):
                new = f"{alias}@" + (f":{ports}" if ports is not None else "")
                items[i] = new
                warnings.append(f"{path}[{i}]: {json.dumps(text)} is read as the user {alias}@ "
                                f"(headscale 0.22 namespace style); write {json.dumps(new)}")

    def each(section: str) -> list[tuple[str, Any]]:
        items = _field(doc, section)
        return [(f"{section}[{i}]", x) for i, x in enumerate(items)] if isinstance(items, list) else []

    for path, acl in each("acls"):
        fix_list(_field(acl, "src"), f"{path}.src")
        fix_list(_field(acl, "dst"), f"{path}.dst", with_port=True)
    for path, grant in each("grants"):
        fix_list(_field(grant, "src"), f"{path}.src")
        fix_list(_field(grant, "dst"), f"{path}.dst")
    for path, rule in each("ssh"):
        fix_list(_field(rule, "src"), f"{path}.src")
        fix_list(_field(rule, "dst"), f"{path}.dst")
    for path, test in each("tests"):
        src = _field(test, "src")
        if isinstance(src, str) and _is_bare_user(src.strip(), hosts):
            for k in list(test):
                if k.lower() == "src":
                    test[k] = src.strip() + "@"
            warnings.append(f"{path}.src: {json.dumps(src)} is read as the user {src.strip()}@ "
                            f"(headscale 0.22 namespace style); write {json.dumps(src.strip() + '@')}")
        fix_list(_field(test, "accept"), f"{path}.accept", with_port=True)
        fix_list(_field(test, "deny"), f"{path}.deny", with_port=True)
    for section in ("groups", "tagOwners"):
        table = _field(doc, section)
        if isinstance(table, dict):
            for name, members in table.items():
                fix_list(members, f"{section}[{json.dumps(name)}]")
    approvers = _field(doc, "autoApprovers")
    if isinstance(approvers, dict):
        routes = _field(approvers, "routes")
        if isinstance(routes, dict):
            for prefix, owners in routes.items():
                fix_list(owners, f"autoApprovers.routes[{json.dumps(prefix)}]")
        fix_list(_field(approvers, "exitNode"), "autoApprovers.exitNode")
    return warnings
