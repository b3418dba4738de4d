"""Console pages for machines, users and pre-auth keys."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from quart import Blueprint, Response, request

from app.core.model import Node, User
from app.server.console.qr import qr_svg
from app.service.errors import ServiceError
from app.store.errors import StoreError

EXIT_ROUTES = ("0.0.0.0/0", "::/0")


def when(dt: datetime | None, now: datetime) -> str:
    """"3 min ago" / "in 2 h" / "never"."""
    if dt is None or dt.year <= 1:
        return "never"
    secs = (now - dt).total_seconds()
    ago, secs = secs >= 0, abs(secs)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if secs >= size:
            text = f"{int(secs // size)} {unit}"
            break
    else:
        text = f"{int(secs)} s"
    return f"{text} ago" if ago else f"in {text}"


def node_view(n: Node, c: Any, now: datetime) -> dict[str, Any]:
    st = c.state
    user = st.users.get(n.user_id) if n.user_id is not None else None
    advertised = sorted(set(n.routable_ips))
    return {
        "id": n.id, "name": n.given_name, "hostname": n.hostname, "tags": list(n.tags),
        "owner": ("tagged" if n.tags else (user.name if user else "—")),
        "addresses": list(n.addresses), "online": n.id in st.online,
        "last_seen": "now" if n.id in st.online else when(n.last_seen, now), "last_seen_iso": n.last_seen.isoformat() if n.last_seen else "",
        "expiry": "no expiry" if n.expiry is None or n.expiry.year <= 1 else
        ("expired " + when(n.expiry, now) if n.is_expired(now) else "expires " + when(n.expiry, now)),
        "expired": n.is_expired(now),
        "subnets": [r for r in advertised if r not in EXIT_ROUTES],
        "approved": set(n.approved_routes),
        "exit_advertised": any(r in EXIT_ROUTES for r in advertised),
        "exit_approved": all(r in n.approved_routes for r in EXIT_ROUTES),
        "os": str((n.hostinfo or {}).get("OS") or ""),
        "version": str((n.hostinfo or {}).get("IPNVersion") or ""),
        "machine_key": n.machine_key, "node_key": n.node_key,
        "created": n.created_at.isoformat(timespec="seconds") if n.created_at else "",
    }


async def act(c: Any, fn: Callable[[], Awaitable[Any]], ok: str, back: str) -> Response:
    """Run one change; report it (or the error, which changed nothing) on the next page."""
    try:
        await fn()
    except (ServiceError, StoreError) as exc:
        c.flash("error", str(getattr(exc, "message", None) or exc))
    else:
        c.flash("ok", ok)
    return c.back(back)


def _words(text: str) -> list[str]:
    return [w for w in re.split(r"[\s,]+", text or "") if w]


def register(bp: Blueprint, c: Any) -> None:
    st = c.state

    @bp.get("/machines")
    async def machines():
        now = st.now()
        nodes = [node_view(n, c, now) for n in sorted(st.nodes.values(), key=lambda n: n.id)]
        return await c.render("machines.html", nodes=nodes)

    @bp.get("/machines/state.json")
    async def machines_state():
        now = st.now()
        body = {"nodes": [{"id": n.id, "online": n.id in st.online, "name": n.given_name,
                           "lastSeen": "now" if n.id in st.online else when(n.last_seen, now)}
                          for n in st.nodes.values()]}
        import json

        return Response(json.dumps(body), content_type="application/json")

    @bp.get("/machines/<int:nid>")
    async def machine(nid: int):
        n = st.nodes.get(nid)
        if n is None:
            c.flash("error", f"machine {nid} does not exist (deleted?)")
            return c.back("/admin/machines")
        return await c.render("machine.html", n=node_view(n, c, st.now()))

    @bp.post("/machines/<int:nid>/rename")
    async def rename(nid: int):
        name = ((await request.form).get("name") or "").strip()
        return await act(c, lambda: st.rename_node(nid, name), f"renamed to {name}", f"/admin/machines/{nid}")

    @bp.post("/machines/<int:nid>/expire")
    async def expire(nid: int):
        return await act(c, lambda: st.expire_node(nid), "key expired: the machine must log in again",
                         f"/admin/machines/{nid}")

    @bp.post("/machines/<int:nid>/delete")
    async def delete(nid: int):
        return await act(c, lambda: st.delete_node(nid), f"machine {nid} deleted", "/admin/machines")

    @bp.post("/machines/<int:nid>/tags")
    async def tags(nid: int):
        tags = _words((await request.form).get("tags") or "")
        return await act(c, lambda: st.set_tags(nid, tags), "tags saved", f"/admin/machines/{nid}")

    @bp.post("/machines/<int:nid>/routes")
    async def routes(nid: int):
        form = await request.form
        chosen = [r for r in form.getlist("route") if r not in EXIT_ROUTES]
        if form.get("exit") == "on":
            chosen += list(EXIT_ROUTES)
        return await act(c, lambda: st.approve_routes(nid, chosen), "routes saved", f"/admin/machines/{nid}")

    # ---- users -------------------------------------------------------------------------
    @bp.get("/users")
    async def users():
        counts: dict[int, int] = {}
        for n in st.nodes.values():
            if n.user_id is not None and not n.tags:
                counts[n.user_id] = counts.get(n.user_id, 0) + 1
        rows = [{"u": u, "nodes": counts.get(u.id, 0)} for u in sorted(st.users.values(), key=lambda u: u.id)]
        return await c.render("users.html", rows=rows)

    @bp.post("/users")
    async def create_user():
        f = await request.form
        name = (f.get("name") or "").strip()
        return await act(c, lambda: st.create_user(name, (f.get("display_name") or "").strip(),
                                                   (f.get("email") or "").strip()),
                         f"user {name} created", "/admin/users")

    @bp.post("/users/<int:uid>/rename")
    async def rename_user(uid: int):
        name = ((await request.form).get("name") or "").strip()
        return await act(c, lambda: st.rename_user(uid, name), f"user renamed to {name}", "/admin/users")

    @bp.post("/users/<int:uid>/delete")
    async def delete_user(uid: int):
        return await act(c, lambda: st.delete_user(uid), "user deleted", "/admin/users")

    # ---- pre-auth keys -----------------------------------------------------------------
    @bp.get("/keys")
    async def keys():
        now = st.now()
        rows = []
        for k in await st.list_preauth_keys():
            u: User | None = st.users.get(k.user_id) if k.user_id is not None else None
            rows.append({"k": k, "user": u.name if u else "", "expired": k.is_expired(now),
                         "expires": when(k.expiration, now), "usable": not k.is_expired(now) and
                         (k.reusable or not k.used)})
        users = sorted(st.users.values(), key=lambda u: u.id)
        return await c.render("keys.html", rows=rows, users=users)

    @bp.post("/keys")
    async def create_key():
        f = await request.form
        user_ref = (f.get("user") or "").strip()
        user_id = int(user_ref) if user_ref.isascii() and user_ref.isdigit() else None
        tags = _words(f.get("tags") or "")
        try:
            hours = float(f.get("hours") or 24)
            if not 0 < hours <= 24 * 365:
                raise ValueError
        except ValueError:
            c.flash("error", "expiration must be between a minute and a year (hours, e.g. 24)")
            return c.back("/admin/keys")
        try:
            key, full = await st.create_preauth_key(
                user_id, reusable=f.get("reusable") == "on", ephemeral=f.get("ephemeral") == "on",
                expiration=st.now() + timedelta(hours=hours), tags=tags)
        except (ServiceError, StoreError) as exc:
            c.flash("error", str(getattr(exc, "message", None) or exc))
            return c.back("/admin/keys")
        command = f"tailscale up --login-server {c.services.cfg.server_url} --authkey {full}"
        return await c.render("key_created.html", key=key, full=full, command=command, qr=qr_svg(command))

    @bp.post("/keys/<int:kid>/expire")
    async def expire_key(kid: int):
        return await act(c, lambda: st.expire_preauth_key(kid), f"pre-auth key {kid} expired", "/admin/keys")
