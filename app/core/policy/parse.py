"""HuJSON text → ``Policy``, collecting every problem with its path into the document.

Two passes: ``_Reader`` checks shapes section by section (types, alias syntax, ports,
protocols); ``_validate`` then checks references across sections (tags need an owner entry,
groups and hosts must exist, autogroups must fit their position, grant/SSH restrictions).
Field names match case-insensitively and unknown fields are errors, like headscale's
``encoding/json/v2`` options. Messages reuse the wording of Tailscale's control plane where
one exists (the golden captures record it), so operators can search for them.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
from collections.abc import Callable, Collection
from typing import Any

from .aliases import AliasError, autogroup_problem, parse_alias, tag_name_problem
from .errors import PolicyError, Problem
from .hujson import HuJSONError, loads
from .ipset import parse_prefix
from .legacy import bare_user_names
from .model import (
    AG_DANGER_ALL,
    AG_INTERNET,
    AG_MEMBER,
    AG_SELF,
    AG_TAGGED,
    ALL_PORTS,
    AUTOGROUP,
    GROUP,
    HOST,
    PREFIX,
    TAG,
    USER,
    WILDCARD,
    Acl,
    Alias,
    AutoApprovers,
    CheckPeriod,
    DstEntry,
    Grant,
    IpEntry,
    NodeAttr,
    Policy,
    PolicyTest,
    SshRule,
    SshTest,
    frozen_map,
)
from .ports import PortError, format_go_duration, parse_go_duration, parse_ports, parse_protocol, split_dst

__all__ = ["UNSUPPORTED_FIELDS", "parse_dst", "parse_policy", "q"]

# Tailscale policy features headscale does not implement: rejected by name.
UNSUPPORTED_FIELDS = {
    "postures": "device posture checks",
    "defaultsrcposture": "device posture checks",
    "srcposture": "device posture checks",
    "ipsets": "IP sets",
    "derpmap": "a DERP map in the policy (configure DERP in the server config)",
    "disableipv4": "tailnet-wide IPv4 settings",
    "onecgnatroute": "tailnet-wide routing settings",
    "attrs": "policy attributes",
    "app": "app connectors",
}

_SSH_CHECK_MAX_NS = 168 * 3600 * 1_000_000_000
_RESERVED_POOLS = (ipaddress.ip_network("100.100.100.0/24"), ipaddress.ip_network("100.115.92.0/23"))
_CGNAT = ipaddress.ip_network("100.64.0.0/10")

# Capabilities in the tailscale.com domain that users may grant (headscale's allowlist).
_GRANTABLE_TS_CAPS = {
    "tailscale.com/cap/drive", "tailscale.com/cap/relay", "tailscale.com/cap/webui",
    "tailscale.com/cap/kubernetes", "tailscale.com/cap/tsidp", "tailscale.com/cap/secrets",
}

_UNSUPPORTED_NODE_ATTRS = {
    "funnel": "Funnel is not supported by headscale (https://github.com/juanfont/headscale/issues/2527)",
}


def q(text: str) -> str:
    """Go's %q for the characters policies contain."""
    return json.dumps(text, ensure_ascii=False)


def parse_policy(text: str | bytes, *, tailnet_domains: Collection[str] | None = None) -> Policy:
    """Parse and validate a policy document; raises ``PolicyError`` listing every problem.

    Empty text (or ``null``) is the empty policy ``{}``, which allows all traffic.
    ``tailnet_domains``, when given, are the email domains that ``user:*@<domain>`` and
    ``localpart:*@<domain>`` may name (Tailscale's "associated domains"; compared exactly).
    """
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8", errors="replace")
    if not text.strip():
        return Policy()
    try:
        doc = loads(text)
    except HuJSONError as exc:
        raise PolicyError([Problem("", f"parsing HuJSON: {exc}")]) from None
    if doc is None:
        return Policy()
    reader = _Reader()
    if not isinstance(doc, dict):
        raise PolicyError([Problem("", "a policy must be a JSON object")])
    warnings = bare_user_names(doc)
    policy = reader.policy(doc)
    if not reader.problems:
        _validate(policy, reader.problems)
        if tailnet_domains is not None:
            _check_domains(policy, set(tailnet_domains), reader.problems)
    if reader.problems:
        raise PolicyError(reader.problems)
    return dataclasses.replace(policy, warnings=tuple(warnings)) if warnings else policy


def parse_dst(text: str) -> tuple[Alias, tuple[tuple[int, int], ...]]:
    """``alias:ports`` (ACL dst and test dst); raises ValueError with a message."""
    if ":" not in text:
        raise ValueError("hostport must contain a colon")
    try:
        alias_text, ports_text = split_dst(text)
    except PortError as exc:
        raise ValueError(str(exc)) from None
    try:
        ports = parse_ports(ports_text)
    except PortError as exc:
        raise ValueError(f"dst={q(text)}: port range {q(ports_text)}: {exc}") from None
    try:
        alias = parse_alias(alias_text)
    except AliasError as exc:
        raise ValueError(str(exc)) from None
    problem = _alias_syntax_problem(alias)
    if problem:
        raise ValueError(problem)
    return alias, ports


def _alias_syntax_problem(alias: Alias) -> str | None:
    """headscale ``Alias.Validate`` (run for ACL destinations)."""
    if alias.kind == TAG:
        return tag_name_problem(alias.name)
    if alias.kind == AUTOGROUP:
        return autogroup_problem(alias.name)
    return None


class _Reader:
    """Shape checks; appends to ``problems`` and returns best-effort values."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    # --- generic helpers ----------------------------------------------
    def fields(self, obj: Any, path: str, known: tuple[str, ...], *,
               ignore_hash: bool = False) -> dict[str, Any] | None:
        """Map an object's keys to ``known`` names case-insensitively; report the rest."""
        if not isinstance(obj, dict):
            self.add(path, f"expected an object, got {_json_type(obj)}")
            return None
        by_lower = {k.lower(): k for k in known}
        out: dict[str, Any] = {}
        for key, value in obj.items():
            if ignore_hash and key.startswith("#"):
                continue    # headscale-admin keeps metadata in "#..." keys
            name = by_lower.get(key.lower())
            where = f"{path}.{key}" if path else key
            if name is None:
                what = UNSUPPORTED_FIELDS.get(key.lower())
                if what:
                    self.add(where, f'"{key}" is not supported by headscale ({what})')
                else:
                    self.add(where, f"unknown field {q(key)}")
                continue
            if name in out:
                self.add(where, f"duplicate field {q(key)}")
                continue
            if value is not None:   # null is the zero value, as in Go
                out[name] = value
        return out

    def strings(self, value: Any, path: str) -> list[str]:
        if not isinstance(value, list):
            self.add(path, f"expected an array of strings, got {_json_type(value)}")
            return []
        out = []
        for i, item in enumerate(value):
            if isinstance(item, str):
                out.append(item)
            else:
                self.add(f"{path}[{i}]", f"expected a string, got {_json_type(item)}")
        return out

    def string(self, value: Any, path: str) -> str:
        if isinstance(value, str):
            return value
        self.add(path, f"expected a string, got {_json_type(value)}")
        return ""

    def objects(self, value: Any, path: str) -> list[tuple[str, Any]]:
        if not isinstance(value, list):
            self.add(path, f"expected an array, got {_json_type(value)}")
            return []
        return [(f"{path}[{i}]", item) for i, item in enumerate(value)]

    def aliases(self, value: Any, path: str, allowed: Callable[[Alias, str], bool] | None = None
                ) -> tuple[Alias, ...]:
        out = []
        for i, text in enumerate(self.strings(value, path)):
            where = f"{path}[{i}]"
            try:
                alias = parse_alias(text.strip())
            except AliasError as exc:
                self.add(where, str(exc))
                continue
            if allowed is None or allowed(alias, where):
                out.append(alias)
        return tuple(out)

    # --- sections ------------------------------------------------------
    def policy(self, doc: dict[str, Any]) -> Policy:
        f = self.fields(doc, "", ("groups", "hosts", "tagOwners", "acls", "grants", "nodeAttrs",
                                  "autoApprovers", "ssh", "tests", "sshTests",
                                  "randomizeClientPort")) or {}
        randomize = f.get("randomizeClientPort", False)
        if not isinstance(randomize, bool):
            self.add("randomizeClientPort", f"expected a boolean, got {_json_type(randomize)}")
            randomize = False
        ssh = self.ssh(f["ssh"]) if "ssh" in f else ()
        return Policy(
            groups=frozen_map(self.groups(f["groups"]) if "groups" in f else {}),
            hosts=frozen_map(self.hosts(f["hosts"]) if "hosts" in f else {}),
            tag_owners=frozen_map(self.tag_owners(f["tagOwners"]) if "tagOwners" in f else {}),
            acls=self.acls(f["acls"]) if "acls" in f else (),
            grants=self.grants(f["grants"]) if "grants" in f else (),
            has_filter="acls" in f or "grants" in f,
            node_attrs=self.node_attrs(f["nodeAttrs"]) if "nodeAttrs" in f else (),
            auto_approvers=self.auto_approvers(f["autoApprovers"]) if "autoApprovers" in f
            else AutoApprovers(),
            ssh=ssh,
            has_ssh=bool(ssh),
            tests=self.tests(f["tests"]) if "tests" in f else (),
            ssh_tests=self.ssh_tests(f["sshTests"]) if "sshTests" in f else (),
            randomize_client_port=randomize,
        )

    def groups(self, value: Any) -> dict[str, tuple[str, ...]]:
        if not isinstance(value, dict):
            self.add("groups", f"expected an object, got {_json_type(value)}")
            return {}
        out: dict[str, tuple[str, ...]] = {}
        for name, members in value.items():
            path = f"groups[{q(name)}]"
            if not name.startswith("group:"):
                self.add(path, f"group must start with 'group:', got: {q(name)}")
            if isinstance(members, str):
                self.add(path, f"group value must be an array of users: group {q(name)} got string: "
                               f"{q(members)}")
                continue
            if not isinstance(members, list):
                self.add(path, f"group value must be an array of users: group {q(name)} got "
                               f"{_json_type(members)}")
                continue
            users = []
            for i, m in enumerate(members):
                if not isinstance(m, str):
                    self.add(f"{path}[{i}]", f"invalid group member type: group {q(name)} expected "
                                             f"string but got {_json_type(m)}")
                elif m.startswith("group:"):
                    self.add(path, f"{q(m)}: group members cannot be recursive (list the users instead)")
                elif "@" not in m:
                    self.add(f"{path}[{i}]", f"username must contain @, got: {q(m)}")
                else:
                    users.append(m)
            out[name] = tuple(users)
        return out

    def hosts(self, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.add("hosts", f"expected an object, got {_json_type(value)}")
            return {}
        out = {}
        for name, addr in value.items():
            path = f"hosts[{q(name)}]"
            if "@" in name or ":" in name:
                self.add(path, f"invalid hostname: {q(name)}")
                continue
            if not isinstance(addr, str):
                self.add(path, f"expected a string, got {_json_type(addr)}")
                continue
            try:
                out[name] = parse_prefix(addr)
            except ValueError:
                self.add(path, f"hostname contains invalid IP address: hostname {q(name)} address {q(addr)}")
        return out

    def owner_like(self, value: Any, path: str, kind: str) -> tuple[Alias, ...]:
        out = []
        for i, text in enumerate(self.strings(value, path)):
            if "@" in text:
                out.append(Alias(USER, text))
            elif text.startswith("group:"):
                out.append(Alias(GROUP, text))
            elif text.startswith("tag:"):
                out.append(Alias(TAG, text))
            else:
                self.add(f"{path}[{i}]", f"invalid {kind} format: {q(text)}")
        return tuple(out)

    def tag_owners(self, value: Any) -> dict[str, tuple[Alias, ...]]:
        if not isinstance(value, dict):
            self.add("tagOwners", f"expected an object, got {_json_type(value)}")
            return {}
        out = {}
        for tag, owners in value.items():
            path = f"tagOwners[{q(tag)}]"
            problem = tag_name_problem(tag)
            if problem:
                self.add(path, problem)
                continue
            out[tag] = self.owner_like(owners if owners is not None else [], path, "owner")
        return out

    def acls(self, value: Any) -> tuple[Acl, ...]:
        out = []
        for path, item in self.objects(value, "acls"):
            f = self.fields(item, path, ("action", "proto", "src", "dst"), ignore_hash=True)
            if f is None:
                continue
            action = f.get("action")
            if action is None:
                self.add(path, 'action must be specified (only "accept" is supported)')
                action = ""
            elif not isinstance(action, str):
                self.add(f"{path}.action", f"expected a string, got {_json_type(action)}")
                action = ""
            elif action != "accept":
                self.add(f"{path}.action", f"action={q(action)} is not supported (only \"accept\"; "
                                           "anything not accepted is denied)")
            proto = self.proto(f, path)
            src = self.aliases(f.get("src", []), f"{path}.src")
            dst = []
            for i, text in enumerate(self.strings(f.get("dst", []), f"{path}.dst")):
                try:
                    alias, ports = parse_dst(text)
                except ValueError as exc:
                    self.add(f"{path}.dst[{i}]", str(exc))
                    continue
                dst.append(DstEntry(alias, ports))
            out.append(Acl(action, proto, src, tuple(dst)))
        return tuple(out)

    def grants(self, value: Any) -> tuple[Grant, ...]:
        out = []
        for path, item in self.objects(value, "grants"):
            f = self.fields(item, path, ("src", "dst", "ip", "app", "via"))
            if f is None:
                continue
            src = self.aliases(f.get("src", []), f"{path}.src")
            dst = self.aliases(f.get("dst", []), f"{path}.dst")
            ips = []
            for i, text in enumerate(self.strings(f.get("ip", []), f"{path}.ip")):
                try:
                    ips.append(_ip_entry(text))
                except ValueError as exc:
                    self.add(f"{path}.ip[{i}]", str(exc))
            app = None
            if "app" in f:
                app = self.app(f["app"], f"{path}.app")
            via = []
            raw_via = f.get("via", [])
            if not isinstance(raw_via, list):
                self.add(f"{path}.via", "via can only be a tag")
                raw_via = []
            for i, item_via in enumerate(raw_via):
                if not isinstance(item_via, str) or tag_name_problem(item_via):
                    self.add(f"{path}.via[{i}]", "via can only be a tag")
                else:
                    via.append(item_via)
            out.append(Grant(src, dst, tuple(ips), app, tuple(via)))
        return tuple(out)

    def app(self, value: Any, path: str) -> Any:
        if not isinstance(value, dict):
            self.add(path, f"expected an object of capability -> array, got {_json_type(value)}")
            return None
        caps = {}
        for cap, values in value.items():
            if values is None:
                values = []
            if not isinstance(values, list):
                self.add(f"{path}[{q(cap)}]", f"capability values must be an array, got {_json_type(values)}")
                continue
            caps[cap] = tuple(values)
        return frozen_map(caps)

    def ssh(self, value: Any) -> tuple[SshRule, ...]:
        out = []
        for path, item in self.objects(value, "ssh"):
            f = self.fields(item, path, ("action", "src", "dst", "users", "checkPeriod", "acceptEnv"))
            if f is None:
                continue
            action = self.string(f.get("action", ""), f"{path}.action").strip()
            if action not in ("", "accept", "check"):
                self.add(f"{path}.action", f"{q(action)} is not a valid action (use \"accept\" or \"check\")")
            src = self.aliases(f.get("src", []), f"{path}.src", self._ssh_src_ok)
            dst = self.aliases(f.get("dst", []), f"{path}.dst", self._ssh_dst_ok)
            users = tuple(u.strip() for u in self.strings(f.get("users", []), f"{path}.users"))
            period = None
            if "checkPeriod" in f:
                raw = f["checkPeriod"]
                raw = raw if isinstance(raw, str) else json.dumps(raw)
                if raw == "always":
                    period = CheckPeriod(always=True)
                else:
                    try:
                        ns = parse_go_duration(raw)
                    except ValueError as exc:
                        self.add(f"{path}.checkPeriod", str(exc))
                    else:
                        period = CheckPeriod(seconds=ns / 1e9)
            accept_env = tuple(self.strings(f.get("acceptEnv", []), f"{path}.acceptEnv"))
            out.append(SshRule(action, src, dst, users, period, accept_env))
        return tuple(out)

    def _ssh_src_ok(self, alias: Alias, where: str) -> bool:
        if alias.kind in (USER, GROUP, TAG, AUTOGROUP):
            return True
        self.add(where, f"alias not supported for SSH source: {q(alias.name)} "
                        "(use users, groups, tags or autogroups)")
        return False

    def _ssh_dst_ok(self, alias: Alias, where: str) -> bool:
        if alias.kind in (USER, TAG, AUTOGROUP, HOST):
            return True
        if alias.kind == WILDCARD:
            self.add(where, "wildcard (*) is not supported as SSH destination; use 'autogroup:member' "
                            "for user-owned devices, 'autogroup:tagged' for tagged devices, or "
                            "specific tags/users")
        else:
            self.add(where, f"alias not supported for SSH destination: {q(alias.name)}")
        return False

    def node_attrs(self, value: Any) -> tuple[NodeAttr, ...]:
        out = []
        for path, item in self.objects(value, "nodeAttrs"):
            f = self.fields(item, path, ("target", "attr", "ipPool"))
            if f is None:
                continue
            targets = self.aliases(f.get("target", []), f"{path}.target")
            attrs = tuple(self.strings(f.get("attr", []), f"{path}.attr"))
            pool = []
            for i, text in enumerate(self.strings(f.get("ipPool", []), f"{path}.ipPool")):
                try:
                    pool.append(ipaddress.ip_network(text, strict=False))
                except ValueError:
                    self.add(f"{path}.ipPool[{i}]", f"invalid prefix: {q(text)}")
            out.append(NodeAttr(targets, attrs, tuple(pool)))
        return tuple(out)

    def auto_approvers(self, value: Any) -> AutoApprovers:
        f = self.fields(value, "autoApprovers", ("routes", "exitNode"))
        if f is None:
            return AutoApprovers()
        routes = []
        raw_routes = f.get("routes", {})
        if not isinstance(raw_routes, dict):
            self.add("autoApprovers.routes", f"expected an object, got {_json_type(raw_routes)}")
            raw_routes = {}
        for prefix, approvers in raw_routes.items():
            path = f"autoApprovers.routes[{q(prefix)}]"
            try:
                if "/" not in prefix:
                    raise ValueError
                net = ipaddress.ip_network(prefix, strict=False)
            except ValueError:
                self.add(path, f"invalid route prefix {q(prefix)} (expected a CIDR such as 10.0.0.0/8)")
                continue
            routes.append((net, self.owner_like(approvers if approvers is not None else [], path,
                                                "auto approver")))
        exit_node = self.owner_like(f.get("exitNode", []), "autoApprovers.exitNode", "auto approver")
        return AutoApprovers(tuple(routes), exit_node)

    def proto(self, f: dict[str, Any], path: str) -> str:
        """The ``proto`` field of an ACL or test: a name or number (a JSON number is accepted)."""
        if "proto" not in f:
            return ""
        raw = f["proto"]
        raw = str(raw) if isinstance(raw, int) and not isinstance(raw, bool) else raw
        try:
            return parse_protocol(self.string(raw, f"{path}.proto"))
        except PortError as exc:
            self.add(f"{path}.proto", str(exc))
            return ""

    def tests(self, value: Any) -> tuple[PolicyTest, ...]:
        out = []
        for path, item in self.objects(value, "tests"):
            f = self.fields(item, path, ("src", "proto", "accept", "deny"))
            if f is None:
                continue
            proto = self.proto(f, path)
            out.append(PolicyTest(
                src=self.string(f.get("src", ""), f"{path}.src"),
                proto=proto,
                accept=tuple(self.strings(f.get("accept", []), f"{path}.accept")),
                deny=tuple(self.strings(f.get("deny", []), f"{path}.deny")),
            ))
        return tuple(out)

    def ssh_tests(self, value: Any) -> tuple[SshTest, ...]:
        out = []
        for path, item in self.objects(value, "sshTests"):
            f = self.fields(item, path, ("src", "dst", "accept", "deny", "check"))
            if f is None:
                continue
            src = None
            src_text = self.string(f.get("src", ""), f"{path}.src").strip()
            if src_text:
                try:
                    src = parse_alias(src_text)
                except AliasError as exc:
                    self.add(f"{path}.src", str(exc))
            dst = self.aliases(f.get("dst", []), f"{path}.dst")
            accept, deny, check = (tuple(u.strip() for u in self.strings(f.get(key, []), f"{path}.{key}"))
                                   for key in ("accept", "deny", "check"))
            out.append(SshTest(src, dst, accept, deny, check))
        return tuple(out)


def _ip_entry(text: str) -> IpEntry:
    """A grant ``ip`` element: ``*``, ``ports`` or ``proto:ports``."""
    if text == "*":
        return IpEntry("", (ALL_PORTS,))
    if ":" not in text:
        try:
            return IpEntry("", parse_ports(text))
        except PortError as exc:
            raise ValueError(f"port range {q(text)}: {exc}") from None
    parts = text.split(":")
    if len(parts) != 2:
        raise ValueError(f"expected only one colon in Internet protocol and port type, got: {q(text)}")
    try:
        proto = parse_protocol(parts[0], canonical=False)
    except PortError as exc:
        raise ValueError(str(exc)) from None
    try:
        ports = parse_ports(parts[1])
    except PortError as exc:
        raise ValueError(f"port range {q(parts[1])}: {exc}") from None
    return IpEntry(proto, ports)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


# --- cross-reference validation ------------------------------------------------

_SRC_AUTOGROUPS = (AG_MEMBER, AG_TAGGED, AG_DANGER_ALL)
_DST_AUTOGROUPS = (AG_INTERNET, AG_MEMBER, AG_TAGGED, AG_SELF)
_SSH_SRC_AUTOGROUPS = (AG_MEMBER, AG_TAGGED)
_SSH_DST_AUTOGROUPS = (AG_MEMBER, AG_TAGGED, AG_SELF)
_NODEATTR_AUTOGROUPS = (AG_MEMBER, AG_TAGGED)
_SELF_MSG = "autogroup:self can only be used with users, groups, or supported autogroups"


def _validate(p: Policy, problems: list[Problem]) -> None:
    add = lambda path, msg: problems.append(Problem(path, msg))

    def host(alias: Alias, where: str) -> None:
        if alias.name not in p.hosts:
            add(where, f"{q(alias.name)}: invalid address (not an IP, a CIDR or a name defined in \"hosts\")")

    def group(alias: Alias, where: str) -> None:
        if alias.name not in p.groups:
            add(where, f"group not defined in policy: {q(alias.name)}")

    def autogroup(alias: Alias, where: str, allowed: tuple[str, ...], side: str) -> bool:
        problem = autogroup_problem(alias.name)
        if problem:
            add(where, problem)
            return False
        if alias.name not in allowed:
            add(where, f"autogroup not supported for {side}: {q(alias.name)}, can be [{' '.join(allowed)}]")
            return False
        return True

    def check_src(alias: Alias, where: str) -> None:
        if alias.kind == HOST:
            host(alias, where)
        elif alias.kind == AUTOGROUP:
            if alias.name == AG_INTERNET:
                add(where, "autogroup:internet can only be used in ACL destinations")
            elif alias.name == AG_SELF:
                add(where, '"autogroup:self" not valid on the src side of a rule')
            else:
                autogroup(alias, where, _SRC_AUTOGROUPS, "ACL sources")
        elif alias.kind == GROUP:
            group(alias, where)
        elif alias.kind == TAG and alias.name not in p.tag_owners:
            add(where, f"src=tag not found: {q(alias.name)} (add it to tagOwners)")

    def check_dst(alias: Alias, where: str, acl: bool) -> None:
        if alias.kind == HOST:
            host(alias, where)
        elif alias.kind == AUTOGROUP:
            if alias.name == AG_DANGER_ALL:
                add(where, "cannot use autogroup:danger-all as a dst")
            else:
                autogroup(alias, where, _DST_AUTOGROUPS, "ACL destinations")
        elif alias.kind == GROUP:
            group(alias, where)
        elif alias.kind == TAG and alias.name not in p.tag_owners:
            prefix = f"dst={q(alias.name)}: " if acl else ""
            add(where, f"{prefix}tag not found: {q(alias.name)} (add it to tagOwners)")

    def self_sources_ok(src: tuple[Alias, ...], allow_wildcard: bool) -> bool:
        for a in src:
            if a.kind in (USER, GROUP) or a.is_autogroup(AG_MEMBER):
                continue
            if a.kind == WILDCARD and allow_wildcard:
                continue
            return False
        return True

    for i, acl in enumerate(p.acls):
        path = f"acls[{i}]"
        for j, a in enumerate(acl.src):
            check_src(a, f"{path}.src[{j}]")
        for j, d in enumerate(acl.dst):
            check_dst(d.alias, f"{path}.dst[{j}]", True)
        if acl.proto not in ("", "tcp", "udp", "sctp") and any(
                pr != ALL_PORTS for d in acl.dst for pr in d.ports):
            add(f"{path}.proto", f"protocol does not support specific ports: {q(acl.proto)}, "
                                 'only "*" is allowed')
        if any(d.alias.is_autogroup(AG_SELF) for d in acl.dst) and not self_sources_ok(acl.src, True):
            add(f"{path}.src", _SELF_MSG)

    for i, g in enumerate(p.grants):
        path = f"grants[{i}]"
        if not g.ip and not g.app:
            add(path, "ip and app can not both be empty")
        for cap in (g.app or {}):
            if "://" in cap:
                add(f"{path}.app[{q(cap)}]", "capability name must have the form {domain}/{path}")
            elif cap.startswith("tailscale.com/") and cap not in _GRANTABLE_TS_CAPS:
                add(f"{path}.app[{q(cap)}]", "capability name must not be in the tailscale.com domain")
        if g.app and any(a.is_autogroup(AG_INTERNET) for a in g.dst):
            add(f"{path}.dst", "cannot use app grants with autogroup:internet")
        for j, a in enumerate(g.dst):
            if a.kind == PREFIX and a.net is not None and a.net.prefixlen == 0:
                add(f"{path}.dst[{j}]", f'dst {q(str(a.net))}: to allow all IP addresses, use "*" or '
                                        '"autogroup:internet"')
                break
        for j, a in enumerate(g.src):
            check_src(a, f"{path}.src[{j}]")
        for j, a in enumerate(g.dst):
            check_dst(a, f"{path}.dst[{j}]", False)
        for j, tag in enumerate(g.via):
            if tag not in p.tag_owners:
                add(f"{path}.via[{j}]", f"tag {q(tag)} not found")
        if any(a.is_autogroup(AG_SELF) for a in g.dst) and not self_sources_ok(g.src, False):
            add(f"{path}.src", _SELF_MSG)

    for i, rule in enumerate(p.ssh):
        path = f"ssh[{i}]"
        if not rule.action:
            add(f"{path}.action", 'action must be specified ("accept" or "check")')
        if not rule.users:
            add(f"{path}.users", "users must be specified")
        for j, u in enumerate(rule.users):
            if u in ("", "*"):
                add(f"{path}.users[{j}]", f"user {q(u)} is not valid")
        for j, env in enumerate(rule.accept_env):
            if env == "":
                add(f"{path}.acceptEnv[{j}]", "acceptEnv values cannot be empty")
        for j, a in enumerate(rule.src):
            where = f"{path}.src[{j}]"
            if a.kind == AUTOGROUP:
                if a.name == AG_INTERNET:
                    add(where, "autogroup:internet can only be used in ACL destinations")
                else:
                    autogroup(a, where, _SSH_SRC_AUTOGROUPS, "SSH sources")
            elif a.kind == GROUP:
                group(a, where)
            elif a.kind == TAG and a.name not in p.tag_owners:
                add(where, f"tag not found: {q(a.name)} (add it to tagOwners)")
        for j, a in enumerate(rule.dst):
            where = f"{path}.dst[{j}]"
            if a.kind == AUTOGROUP:
                if a.name == AG_INTERNET:
                    add(where, "autogroup:internet can only be used in ACL destinations")
                else:
                    autogroup(a, where, _SSH_DST_AUTOGROUPS, "SSH destinations")
            elif a.kind == TAG and a.name not in p.tag_owners:
                add(where, f"tag not found: {q(a.name)} (add it to tagOwners)")
            elif a.kind == HOST:
                add(where, f"invalid dst {q(a.name)} (SSH destinations must be users, tags or autogroups)")
        problem = _ssh_combination_problem(rule)
        if problem:
            add(path, problem)
        if rule.check_period is not None:
            if rule.action != "check":
                add(f"{path}.checkPeriod", 'checkPeriod is only valid with action "check"')
            elif not rule.check_period.always:
                ns = round(rule.check_period.seconds * 1e9)
                if ns < 0:
                    add(f"{path}.checkPeriod", f"checkPeriod {format_go_duration(ns)} must be a positive duration")
                elif ns > _SSH_CHECK_MAX_NS:
                    add(f"{path}.checkPeriod", f"checkPeriod {format_go_duration(ns)} is above the max (168h)")

    for i, na in enumerate(p.node_attrs):
        path = f"nodeAttrs[{i}]"
        for j, a in enumerate(na.targets):
            where = f"{path}.target[{j}]"
            if a.kind == HOST:
                host(a, where)
            elif a.kind == AUTOGROUP:
                problem = autogroup_problem(a.name)
                if problem:
                    add(where, problem)
                elif a.name not in _NODEATTR_AUTOGROUPS:
                    add(where, f"nodeAttrs target does not support this autogroup: {q(a.name)}, "
                               f"can be [{' '.join(_NODEATTR_AUTOGROUPS)}]")
            elif a.kind == GROUP:
                group(a, where)
            elif a.kind == TAG and a.name not in p.tag_owners:
                add(where, f"tag not found: {q(a.name)} (add it to tagOwners)")
        for j, attr in enumerate(na.attrs):
            if attr in _UNSUPPORTED_NODE_ATTRS:
                add(f"{path}.attr[{j}]", _UNSUPPORTED_NODE_ATTRS[attr])
        for j, net in enumerate(na.ip_pool):
            where = f"{path}.ipPool[{j}]"
            if any(net.overlaps(r) for r in _RESERVED_POOLS):
                add(where, f"IPPool({net}): network within reserved range")
            elif net.version != 4 or not net.subnet_of(_CGNAT):
                add(where, f"IPPool({net}): nodeAttrs ipPool must be within 100.64.0.0/10")
            else:
                add(where, "nodeAttrs ipPool is not supported by headscale yet "
                           "(https://github.com/juanfont/headscale/issues/2912)")

    for tag, owners in p.tag_owners.items():
        for j, o in enumerate(owners):
            where = f"tagOwners[{q(tag)}][{j}]"
            if o.kind == GROUP:
                group(o, where)
            elif o.kind == TAG and o.name not in p.tag_owners:
                add(where, f"tag not found: {q(o.name)} (add it to tagOwners)")

    for net, approvers in p.auto_approvers.routes:
        for j, o in enumerate(approvers):
            where = f"autoApprovers.routes[{q(str(net))}][{j}]"
            if o.kind == GROUP:
                group(o, where)
            elif o.kind == TAG and o.name not in p.tag_owners:
                add(where, f"tag not found: {q(o.name)} (add it to tagOwners)")
    for j, o in enumerate(p.auto_approvers.exit_node):
        where = f"autoApprovers.exitNode[{j}]"
        if o.kind == GROUP:
            group(o, where)
        elif o.kind == TAG and o.name not in p.tag_owners:
            add(where, f"tag not found: {q(o.name)} (add it to tagOwners)")

    for i, t in enumerate(p.tests):
        path = f"tests[{i}]"
        if not t.accept and not t.deny:
            add(path, 'test(s) failed: test entry must have at least one of "accept" or "deny"')
        if t.proto not in ("", "tcp", "udp", "sctp"):
            add(f"{path}.proto", f"test(s) failed: test protocol must be tcp, udp, sctp, or empty: {q(t.proto)}")
        for key, dsts in (("accept", t.accept), ("deny", t.deny)):
            for j, dst in enumerate(dsts):
                problem = _test_dst_problem(p, dst)
                if problem:
                    add(f"{path}.{key}[{j}]", f"test(s) failed: {problem}")

    for i, t in enumerate(p.ssh_tests):
        path = f"sshTests[{i}]"
        if t.src is None:
            add(f"{path}.src", "test(s) failed: SSH tests entry must have a non-empty src")
        if not t.dst:
            add(f"{path}.dst", "test(s) failed: SSH tests entry must have at least one dst")
        for j, a in enumerate(t.dst):
            problem = _ssh_test_dst_problem(p, a)
            if problem:
                add(f"{path}.dst[{j}]", f"test(s) failed: {problem}")


def _check_domains(p: Policy, domains: set[str], problems: list[Problem]) -> None:
    def bad(domain: str) -> bool:
        return domain not in domains

    def msg(domain: str) -> str:
        return (f"{domain} is not associated with this Tailnet and cannot be used in "
                "user:*@<domain> expressions")

    def aliases(items: tuple[Alias, ...], path: str, prefix: str = "") -> None:
        for j, a in enumerate(items):
            if a.kind == USER and a.name.startswith("user:*@") and bad(a.name[7:]):
                problems.append(Problem(f"{path}[{j}]", prefix + msg(a.name[7:])))

    for i, acl in enumerate(p.acls):
        aliases(acl.src, f"acls[{i}].src")
        aliases(tuple(d.alias for d in acl.dst), f"acls[{i}].dst")
    for i, g in enumerate(p.grants):
        aliases(g.src, f"grants[{i}].src")
        aliases(g.dst, f"grants[{i}].dst")
    for i, rule in enumerate(p.ssh):
        aliases(rule.src, f"ssh[{i}].src", "[ssh] ")
        aliases(rule.dst, f"ssh[{i}].dst", "[ssh] ")
        for j, u in enumerate(rule.users):
            if u.startswith("localpart:") and "@" in u:
                domain = u.rpartition("@")[2]
                if domain and bad(domain) and u[len("localpart:"):].startswith("*@"):
                    problems.append(Problem(f"ssh[{i}].users[{j}]", msg(domain)))


def _ssh_combination_problem(rule: SshRule) -> str | None:
    """Tailscale SSH's src/dst model (headscale ``validateSSHSrcDstCombination``)."""
    tagged_src = any(a.kind == TAG or a.is_autogroup(AG_TAGGED) for a in rule.src)
    grouped_src = any(a.kind == GROUP or a.is_autogroup(AG_MEMBER) for a in rule.src)
    users_src = {a.name for a in rule.src if a.kind == USER}
    for d in rule.dst:
        if d.kind == USER:
            if tagged_src:
                return (f"tags in SSH source cannot access user-owned devices ({d.name}); use "
                        "autogroup:tagged or specific tags as destinations instead")
            if grouped_src or users_src != {d.name}:
                return (f"user destination requires source to contain only that same user {q(d.name)}; "
                        "use autogroup:self instead for same-user SSH access")
        elif d.is_autogroup(AG_SELF) and tagged_src:
            return ("autogroup:self destination requires source to contain only users or groups, "
                    "not tags or autogroup:tagged")
        elif d.is_autogroup(AG_MEMBER) and tagged_src:
            return "tags in SSH source cannot access autogroup:member (user-owned devices)"
    return None


def _test_dst_problem(p: Policy, dst: str) -> str | None:
    try:
        alias, ports = parse_dst(dst)
    except ValueError as exc:
        return str(exc)
    if alias.is_autogroup(AG_INTERNET):
        return "autogroup:internet not valid as a test destination"
    if len(ports) != 1 or ports[0][0] != ports[0][1]:
        return f"{q(dst)}: test destination port must be a single port"
    if alias.kind == PREFIX and "/" in alias.name:
        return f"{q(dst)}: test destination must be a single host, not a CIDR range"
    if alias.kind == HOST:
        net = p.hosts.get(alias.name)
        if net is not None and net.prefixlen < net.max_prefixlen:
            return f"{q(dst)}: test destination must be a single host, not a CIDR range"
    return None


def _ssh_test_dst_problem(p: Policy, alias: Alias) -> str | None:
    if alias.is_autogroup(AG_INTERNET):
        return f"SSH tests dst contains disallowed element {q(alias.name)}"
    if alias.kind == PREFIX and alias.net is not None and alias.net.prefixlen < alias.net.max_prefixlen:
        return f"SSH tests dst contains disallowed element {q(alias.name)}"
    if alias.kind == TAG and alias.name not in p.tag_owners:
        return f"SSH tests dst contains unknown tag {q(alias.name)}"
    if alias.kind == HOST:
        net = p.hosts.get(alias.name)
        if net is not None and net.prefixlen < net.max_prefixlen:
            return f"SSH tests dst contains disallowed element {q(alias.name)}"
    return None
