"""Console pages for the policy, pending requests (web logins, SSH checks), DERP and metrics."""

from __future__ import annotations

import asyncio
import difflib
from typing import Any

from quart import Blueprint, request

from app.server import metrics
from app.server.console.machines import act, when
from app.service.errors import ServiceError
from app.store.errors import StoreError

STARTER_POLICY = """{
  // Who may reach what. Without any policy every machine reaches every other one.
  "acls": [
    {"action": "accept", "src": ["*"], "dst": ["*:*"]},
  ],
}
"""
GLANCE = ("headscale_nodes", "headscale_nodes_online", "headscale_map_sessions", "headscale_noise_connections",
          "headscale_mapresponse_sent_total", "headscale_registrations_total", "process_resident_memory_bytes",
          "process_open_fds")


def diff(old: str, new: str) -> list[tuple[str, str]]:
    """Unified diff lines as (kind, text); kind is add / del / hunk / same."""
    out = []
    for line in difflib.unified_diff(old.splitlines(), new.splitlines(), "active", "edited", lineterm="", n=3):
        kind = ("hunk" if line.startswith("@@") else "head" if line.startswith(("---", "+++")) else
                "add" if line.startswith("+") else "del" if line.startswith("-") else "same")
        if kind != "head":
            out.append((kind, line))
    return out


def glance() -> list[tuple[str, str, str]]:
    """(metric, labels, value) for the few figures the overview shows."""
    rows = []
    for fam in metrics.REGISTRY.collect():
        for s in fam.samples:
            if s.name.removesuffix("_total") in {g.removesuffix("_total") for g in GLANCE} and \
                    not s.name.endswith("_created"):
                labels = ", ".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
                value = f"{s.value:.0f}" if float(s.value).is_integer() else f"{s.value:.3g}"
                if s.name.endswith("_bytes"):
                    value = f"{s.value / 2**20:.1f} MiB"
                rows.append((s.name, labels, value))
    return sorted(rows)


def register(bp: Blueprint, c: Any) -> None:
    st = c.state
    svc = c.services

    async def active_text() -> tuple[str, Any]:
        pol = await svc.policy.get()
        return (pol[0], pol[1]) if pol is not None else ("", None)

    async def policy_page(text: str, *, errors: str = "", checked: bool = False, status: int = 200):
        current, updated = await active_text()
        return await c.render("policy.html", status=status, text=text, errors=errors, checked=checked,
                              changes=diff(current, text) if text != current else [],
                              updated=updated.isoformat(timespec="seconds") if updated else "",
                              file_mode=svc.policy.mode != "database", has_policy=bool(current))

    @bp.get("/policy")
    async def policy():
        current, _ = await active_text()
        return await policy_page(current or STARTER_POLICY)

    @bp.post("/policy/check")
    async def policy_check():
        text = (await request.form).get("policy") or ""
        try:
            svc.policy.check(text)
        except (ServiceError, StoreError) as exc:
            return await policy_page(text, errors=str(exc), status=400)
        return await policy_page(text, checked=True)

    @bp.post("/policy/save")
    async def policy_save():
        text = (await request.form).get("policy") or ""
        try:
            await svc.policy.set(text)      # parses, compiles, runs the tests, then stores
        except (ServiceError, StoreError) as exc:
            return await policy_page(text, errors=str(exc), status=400)
        c.flash("ok", "policy saved: connected machines have it now")
        return c.back("/admin/policy")

    # ---- pending interactive requests --------------------------------------------------
    @bp.get("/pending")
    async def pending():
        now = asyncio.get_running_loop().time()
        logins = [{"id": p.auth_id, "host": str((p.hostinfo or {}).get("Hostname") or "?"),
                   "os": str((p.hostinfo or {}).get("OS") or ""), "age": int(now - p.created),
                   "machine": p.machine_key[:20] + "…"}
                  for p in svc.registrar.pending.values() if not p.done.is_set()]
        checks = []
        for r in (svc.ssh_checks.pending.values() if svc.ssh_checks else ()):
            if r.decided.is_set():
                continue
            src, dst = st.nodes.get(r.src), st.nodes.get(r.dst)
            checks.append({"id": r.auth_id, "src": src.given_name if src else str(r.src),
                           "dst": dst.given_name if dst else str(r.dst), "age": int(now - r.created)})
        users = sorted(st.users.values(), key=lambda u: u.id)
        return await c.render("pending.html", logins=logins, checks=checks, users=users)

    @bp.post("/pending/login/<auth_id>/approve")
    async def approve_login(auth_id: str):
        ref = ((await request.form).get("user") or "").strip()
        user = st.users.get(int(ref)) if ref.isascii() and ref.isdigit() else None
        if user is None:
            c.flash("error", "choose the user the machine will belong to")
            return c.back("/admin/pending")
        return await act(c, lambda: svc.registrar.complete(auth_id, user), f"machine admitted for {user.name}",
                         "/admin/pending")

    @bp.post("/pending/login/<auth_id>/reject")
    async def reject_login(auth_id: str):
        async def reject():
            svc.registrar.reject(auth_id)
        return await act(c, reject, "login rejected", "/admin/pending")

    @bp.post("/pending/ssh/<auth_id>/<decision>")
    async def decide_ssh(auth_id: str, decision: str):
        async def decide():
            svc.ssh_checks.decide(auth_id, approve=decision == "approve")
        return await act(c, decide, f"SSH session {'approved' if decision == 'approve' else 'rejected'}",
                         "/admin/pending")

    # ---- DERP and metrics at a glance --------------------------------------------------
    @bp.get("/overview")
    async def overview():
        now = st.now()
        regions = []
        for rid, r in sorted((st.derp_map or {}).get("Regions", {}).items(), key=lambda kv: int(kv[0])):
            regions.append({"id": rid, "code": r.get("RegionCode", ""), "name": r.get("RegionName", ""),
                            "nodes": [n.get("HostName", "") for n in r.get("Nodes", [])],
                            "homes": sum(1 for n in st.nodes.values() if n.home_derp == int(rid))})
        keys = await st.list_preauth_keys()
        counts = {"users": len(st.users), "machines": len(st.nodes), "online": len(st.online),
                  "usable_keys": sum(1 for k in keys if not k.is_expired(now) and (k.reusable or not k.used))}
        derp = svc.derp.stats() if svc.derp is not None else None
        return await c.render("overview.html", counts=counts, regions=regions, derp=derp, glance=glance(),
                              policy_updated=when(st.policy_updated, now) if st.policy_updated else "")
