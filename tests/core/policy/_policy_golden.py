"""Loading and comparing the policy golden captures (../shared/testdata/policy-golden).

Each case is turned into our ``User``/``Node`` records, compiled, and compared per captured
node after normalising order: packet filter rules, SSH policy, policy-derived CapMap entries
and visible peers. Used by test_golden.py; ``python tests/core/policy/_policy_golden.py [ids]``
prints the differences for quick debugging.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from app.core.model import Node, User
from app.core.policy import PolicyError, compile_policy, parse_policy

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT)) if str(ROOT) not in sys.path else None
DATA = ROOT.parent / "shared" / "testdata" / "policy-golden"
SERVER_URL = "https://unused"
# The captured tailnet's own email domain (after anonymisation); others are "not associated".
TAILNET_DOMAINS = ("example.com",)

# CapMap keys Tailscale's control plane sends every node regardless of the policy (tailnet
# settings, roles, internal knobs); stripped from both sides so only policy effects compare.
BASELINE_CAPS = {
    "https://tailscale.com/cap/file-sharing", "https://tailscale.com/cap/is-admin",
    "https://tailscale.com/cap/is-owner", "https://tailscale.com/cap/ssh",
    "https://tailscale.com/cap/tailnet-lock", "https://tailscale.com/cap/warn-funnel-no-https",
    "probe-udp-lifetime", "ssh-behavior-v1", "ssh-env-vars", "store-appc-routes",
    "tailnet-display-name", "default-auto-update", "max-key-duration", "native-ipv4",
    "service-host",
}
BASELINE_PREFIXES = ("https://tailscale.com/cap/funnel-ports?",)


def case_files() -> list[Path]:
    return sorted(DATA.glob("*/*.json"))


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def policy_text(case: dict[str, Any]) -> str:
    p = case["policy"]
    return p if isinstance(p, str) else json.dumps(p)


def build(case: dict[str, Any]) -> tuple[list[User], list[Node], dict[str, int]]:
    topo = case["topology"]
    users = [User(id=u["id"], name=u["name"], email=u.get("email", "")) for u in topo.get("users", [])]
    by_name = {u.name: u.id for u in users}
    nodes = []
    ids: dict[str, int] = {}
    for i, (name, nd) in enumerate(sorted(topo["nodes"].items()), start=1):
        tags = tuple(nd.get("tags") or ())
        user_id = None if tags else by_name.get(nd.get("user") or "")
        nodes.append(Node(
            id=i, machine_key=f"mkey:{i:064x}", node_key=f"nodekey:{i:064x}",
            hostname=nd.get("hostname", name), given_name=name, user_id=user_id,
            ipv4=nd.get("ipv4"), ipv6=nd.get("ipv6"),
            hostinfo={"RoutableIPs": list(nd.get("routable_ips") or [])},
            tags=tags, approved_routes=tuple(nd.get("approved_routes") or ()),
        ))
        ids[name] = i
    return users, nodes, ids


def auto_approve(policy, users: list[User], nodes: list[Node]) -> list[Node]:
    """Approve advertised routes the policy's autoApprovers cover, as the control plane did
    when the policy was set (some captures record the topology from before that)."""
    probe = compile_policy(policy, users, nodes, run_tests=False)
    out = []
    for n in nodes:
        extra = sorted(probe.auto_approved_routes(n) - set(n.approved_routes))
        out.append(replace(n, approved_routes=n.approved_routes + tuple(extra)) if extra else n)
    return out


# --- normalisation ------------------------------------------------------------

def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def norm_filter(rules: list[dict[str, Any]] | None) -> list[str]:
    out = []
    for r in rules or []:
        n: dict[str, Any] = {"SrcIPs": sorted(r.get("SrcIPs") or [])}
        if r.get("DstPorts"):
            n["DstPorts"] = sorted((d["IP"], d["Ports"]["First"], d["Ports"]["Last"]) for d in r["DstPorts"])
        if r.get("IPProto"):
            n["IPProto"] = sorted(r["IPProto"])
        if r.get("CapGrant"):
            n["CapGrant"] = sorted(_canon({"Dsts": sorted(g.get("Dsts") or []), "CapMap": g.get("CapMap")})
                                   for g in r["CapGrant"])
        out.append(_canon(n))
    return sorted(out)


def norm_ssh(policy: dict[str, Any] | None) -> list[str]:
    out = []
    for r in (policy or {}).get("rules") or []:
        n = dict(r)
        n["principals"] = sorted(_canon(p) for p in r.get("principals") or [])
        if not n.get("acceptEnv"):
            n.pop("acceptEnv", None)
        out.append(_canon(n))
    return out   # order matters: first match wins


def norm_caps(caps: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (caps or {}).items()
            if k not in BASELINE_CAPS and not k.startswith(BASELINE_PREFIXES)}


# --- running a case -------------------------------------------------------------

@dataclass
class Outcome:
    case_id: str
    category: str
    diffs: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.diffs


def run_case(path: Path, *, check_messages: bool = True) -> Outcome:
    case = load(path)
    out = Outcome(case["test_id"], path.parent.name)
    users, nodes, ids = build(case)
    text = policy_text(case)
    if case.get("error"):
        try:
            policy = parse_policy(text, tailnet_domains=TAILNET_DOMAINS)
            compile_policy(policy, users, nodes, server_url=SERVER_URL)
        except PolicyError as exc:
            want = (case.get("api_response_body") or {}).get("message") or ""
            if check_messages and want and want not in str(exc) and case.get("api_response_code") == 400:
                out.diffs.append(f"message: want {want!r}\n  got {str(exc)!r}")
            return out
        out.diffs.append("accepted a policy Tailscale rejects")
        return out
    try:
        policy = parse_policy(text, tailnet_domains=TAILNET_DOMAINS)
        nodes = auto_approve(policy, users, nodes)
        compiled = compile_policy(policy, users, nodes, server_url=SERVER_URL)
    except PolicyError as exc:
        out.diffs.append(f"rejected a policy Tailscale accepts: {exc}")
        return out
    names = {v: k for k, v in ids.items()}
    for name, cap in sorted((case.get("captures") or {}).items()):
        if cap is None or name not in ids:
            continue
        nid = ids[name]
        want, got = norm_filter(cap.get("packet_filter_rules")), norm_filter(compiled.filter_rules(nid))
        if want != got:
            out.diffs.append(f"{name} filter:\n  want {_lines(want)}\n  got  {_lines(got)}")
        if "ssh_policy" in cap:
            want_s, got_s = norm_ssh(cap.get("ssh_policy")), norm_ssh(compiled.ssh_policy(nid))
            if want_s != got_s:
                out.diffs.append(f"{name} ssh:\n  want {_lines(want_s)}\n  got  {_lines(got_s)}")
        if cap.get("self") is not None:
            want_c = norm_caps(cap["self"].get("CapMap"))
            got_c = norm_caps(compiled.cap_map(nid))
            if want_c != got_c:
                out.diffs.append(f"{name} capmap: want {want_c} got {got_c}")
        if cap.get("peers") is not None:
            want_p = sorted(p["Name"].split(".")[0] for p in cap["peers"])
            got_p = sorted(names[i] for i in compiled.peers(nid))
            if want_p != got_p:
                missing = sorted(set(want_p) - set(got_p))
                extra = sorted(set(got_p) - set(want_p))
                out.diffs.append(f"{name} peers: missing {missing} extra {extra}")
            for p in cap["peers"]:
                pname = p["Name"].split(".")[0]
                if pname in ids and ids[pname] in compiled.peers(nid):
                    want_a = sorted(p.get("AllowedIPs") or [])
                    got_a = sorted(compiled.allowed_ips_for_peer(nid, ids[pname], p.get("PrimaryRoutes") or []))
                    if want_a != got_a:
                        out.diffs.append(f"{name} peer {pname} AllowedIPs: want {want_a} got {got_a}")
                    want_pc = norm_caps(p.get("CapMap"))
                    got_pc = norm_caps(compiled.peer_cap_map(ids[pname]))
                    if want_pc != got_pc:
                        out.diffs.append(f"{name} peer {pname} capmap: want {want_pc} got {got_pc}")
    return out


def _lines(items: list[str]) -> str:
    return "\n       ".join(items) if items else "[]"


if __name__ == "__main__":
    wanted = set(sys.argv[1:])
    from collections import Counter
    stats: Counter[tuple[str, bool]] = Counter()
    for p in case_files():
        o = run_case(p)
        stats[(o.category, o.ok)] += 1
        if (not wanted and not o.ok) or o.case_id in wanted:
            print(f"=== {o.case_id} ({o.category}) {'ok' if o.ok else 'FAIL'}")
            for d in o.diffs[:6]:
                print("  " + d[:3000])
    for cat in sorted({c for c, _ in stats}):
        print(f"{cat}: {stats[(cat, True)]} passed, {stats[(cat, False)]} failed")
