"""The policy's own ``tests`` and ``sshTests`` blocks, evaluated against a compilation.

``tests`` ask whether a source may reach ``host:port`` through the global packet filter
(all of the source's addresses must be allowed for an accept to pass). ``sshTests`` ask
whether login users reach destination nodes through those nodes' SSH policies (any matching
rule counts; ``check`` needs a check-mode rule). Same semantics as headscale's test.go and
sshtest.go. Failures are returned as ``Problem``s whose message starts with Tailscale's
"test(s) failed".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .aliases import AliasError, parse_alias
from .errors import Problem
from .ipset import AddrSet, int_to_addr
from .model import AG_SELF, HOST, PREFIX, USER, PolicyTest, SshTest
from .parse import parse_dst, q
from .ports import DEFAULT_PROTOCOLS, protocol_numbers
from .ssh import SshCompiler, ssh_user_allowed

if TYPE_CHECKING:
    from .compile import CompiledPolicy

__all__ = ["run_tests"]

FAILED = "test(s) failed"


def run_tests(c: CompiledPolicy) -> list[Problem]:
    assert c.policy is not None
    problems: list[Problem] = []
    for i, test in enumerate(c.policy.tests):
        for line in _policy_test(c, test):
            problems.append(Problem(f"tests[{i}]", f"{FAILED}: {line}"))
    if c.policy.ssh_tests:
        ssh = SshCompiler(c, "")
        for i, stest in enumerate(c.policy.ssh_tests):
            for line in _ssh_test(c, ssh, stest):
                problems.append(Problem(f"sshTests[{i}]", f"{FAILED}: {line}"))
    return problems


def _resolve_checked(c: CompiledPolicy, text: str) -> tuple[AddrSet | None, str | None]:
    try:
        alias = parse_alias(text)
    except AliasError as exc:
        return None, f"invalid alias: {exc}"
    if alias.is_autogroup(AG_SELF) or c.resolve_error(alias):
        return None, f"cannot resolve {q(text)}"
    return c.full(c.resolve(alias)), None


def _policy_test(c: CompiledPolicy, test: PolicyTest) -> list[str]:
    src, err = _resolve_checked(c, test.src)
    if err:
        return [f"failed to resolve source {q(test.src)}: {err}"]
    if not src:
        return [f"source {q(test.src)} resolved to no IP addresses"]
    protos = protocol_numbers(test.proto) or DEFAULT_PROTOCOLS
    suffix = f" ({test.proto})" if test.proto else ""
    out = []
    for want, dsts in ((True, test.accept), (False, test.deny)):
        for dst in dsts:
            try:
                alias, ports = parse_dst(dst)
            except ValueError as exc:
                out.append(f"error testing {q(dst)}: {exc}")
                continue
            if alias.is_autogroup(AG_SELF) or c.resolve_error(alias):
                out.append(f"error testing {q(dst)}: cannot resolve destination")
                continue
            dst_set = c.full(c.resolve(alias))
            if not dst_set:
                out.append(f"error testing {q(dst)}: destination resolved to no IP addresses")
                continue
            allowed = all(_reaches(c, lo, hi, dst_set, ports, protos) for lo, hi in src.ivs)
            if allowed != want:
                expected, got = ("ALLOWED", "DENIED") if want else ("DENIED", "ALLOWED")
                out.append(f"{test.src} -> {dst}{suffix}: expected {expected}, got {got}")
    return out


def _reaches(c: CompiledPolicy, lo: int, hi: int, dst: AddrSet, ports, protos) -> bool:
    rules = c.global_rules
    for rule in rules:
        if rule.caps is not None or not rule.src.overlaps(lo, hi):
            continue
        if rule.proto and not any(p in protos for p in rule.proto):
            continue
        for _, lo2, hi2, (first, last) in rule.entries:
            if not dst.overlaps(lo2, hi2):
                continue
            if any(first <= a and b <= last for a, b in ports):
                return True
    return False


def _ssh_test(c: CompiledPolicy, ssh: SshCompiler, test: SshTest) -> list[str]:
    t = c.tailnet
    label = test.src.name if test.src is not None else ""
    if test.src is None or c.resolve_error(test.src) and test.src.kind != USER:
        return [f"failed to resolve source {q(label)}"]
    if test.src.kind == USER and c.resolve_error(test.src):
        return [f"failed to resolve source {q(label)}: user not found"]
    src = c.full(c.resolve(test.src))
    if not src:
        return [f"source {q(label)} resolved to no IP addresses"]
    if test.src.kind in (PREFIX, HOST) and sum(hi - lo + 1 for lo, hi in src.ivs) > 65536:
        return [f"source {q(label)} is too large to test"]
    src_addrs = [str(int_to_addr(a)) for a in src.addresses()]
    src_user = t.user_id(test.src.name) if test.src.kind == USER else None
    if not test.accept and not test.deny and not test.check:
        return ["no accept, deny, or check assertions specified"]
    out: list[str] = []
    dst_nodes: list[int] = []
    for alias in test.dst:
        if alias.is_autogroup(AG_SELF):
            found = [n for n in t.order if src_user is not None and t.owner_of(n) == src_user]
        else:
            if c.resolve_error(alias):
                return [f"failed to resolve destinations: {q(alias.name)}"]
            r = c.resolve(alias)
            found_set = c.nodes_in(r.addrs, routes=False, base=r.nodes)
            found = [n for n in t.order if n in found_set]
        if not found:
            out.append(f"dst alias {q(alias.name)} resolved to no nodes")
        for n in found:
            if n not in dst_nodes:
                dst_nodes.append(n)
    if not dst_nodes:
        return out
    for kind, users in (("accept", test.accept), ("deny", test.deny), ("check", test.check)):
        for user in users:
            for n in dst_nodes:
                rules = ssh.rules_for(n)
                hits = [_reach(rules, a, user) for a in src_addrs]
                host = t.nodes[n].hostname or t.nodes[n].given_name or str(n)
                shown = user if user else '""'
                if kind == "accept" and not all(a for a, _ in hits):
                    out.append(f"{label}/{shown} -> {host}: expected ALLOWED, got DENIED")
                elif kind == "deny" and any(a for a, _ in hits):
                    out.append(f"{label}/{shown} -> {host}: expected DENIED, got ALLOWED")
                elif kind == "check" and not all(ck for _, ck in hits):
                    how = "ALLOWED via accept" if all(a for a, _ in hits) else "DENIED"
                    out.append(f"{label}/{shown} -> {host}: expected ALLOWED via check, got {how}")
    return out


def _reach(rules: list[dict], addr: str, user: str) -> tuple[bool, bool]:
    accept = check = False
    for rule in rules:
        if not any(p.get("nodeIP") == addr for p in rule["principals"]):
            continue
        if not ssh_user_allowed(rule["sshUsers"], user):
            continue
        accept = True
        if "holdAndDelegate" in rule["action"]:
            check = True
    return accept, check
