"""The pages a person sees: sign-in (OIDC) and its outcomes, the admin command for a waiting
machine, Apple and Windows help, the favicon, and a plain page at ``/``.

Routes (headscale 0.29's paths):
  GET  /                          plain page naming the server
  GET  /register/<auth-id>        OIDC: redirect to the provider; else the admin command to copy
  GET  /auth/<auth-id>            SSH check: OIDC sign-in of the source node's owner; else the command
  GET  /oidc/callback             the provider's redirect back (code, state) -> confirmation page
  POST /register/confirm/<auth-id> the person confirms; the machine is registered
  GET  /apple, /apple/<platform>  help, and the configuration profile download
  GET  /windows, /favicon.ico
Every failure is a page (templates/error.html) and one log line without codes or tokens.
"""

from __future__ import annotations

import logging
from typing import Any

from quart import Blueprint, Response, current_app, redirect, request

from app.core import keys
from app.core.authid import is_auth_id
from app.server.pages.assets import APPLE_PLATFORMS, FAVICON, mobileconfig
from app.server.pages.messages import failure
from app.server.pages.render import page

log = logging.getLogger("headscale.oidc")
MAX_FORM = 4096


def _svc():
    return current_app.config["SERVICES"]


def _base() -> dict[str, Any]:
    return {"server_url": _svc().cfg.server_url}


def error_page(reason: str, status: int, detail: str = "") -> Response:
    heading, message, next_step = failure(reason)
    # One line per failure; `detail` comes from our own checks and never holds a code or token.
    log.warning("sign-in failed: %s (%s)", reason, detail or heading)
    return page("error.html", status=status, title=heading, heading=heading, message=message,
                next_step=next_step, reason=reason, code=status, tone="bad", **_base())


def _who(user) -> str:
    """"Alice Example (alice@example.com)", or whichever of the two exists."""
    shown, login = user.display_name, user.login_name
    return f"{shown} ({login})" if shown and login and shown != login else shown or login


def _secure() -> bool:
    return _svc().cfg.server_url.startswith("https://")


def _set_cookies(resp: Response, cookies) -> Response:
    for c in cookies:
        resp.set_cookie(c.name, c.value, max_age=c.max_age, path=c.path, secure=_secure(), httponly=True,
                        samesite=c.samesite)
    return resp


def pages_blueprint() -> Blueprint:
    bp = Blueprint("pages", __name__)

    @bp.get("/")
    async def index():
        return page("index.html", title="Tailscale control server", **_base())

    @bp.get("/favicon.ico")
    async def favicon():
        return Response(FAVICON, content_type="image/png", headers={"Cache-Control": "public, max-age=86400"})

    @bp.get("/windows")
    async def windows():
        return page("windows.html", title="Windows", **_base())

    @bp.get("/apple")
    async def apple():
        return page("apple.html", title="Apple devices", **_base())

    @bp.get("/apple/<platform>")
    async def apple_profile(platform: str):
        if platform not in APPLE_PLATFORMS:
            return page("error.html", status=400, title="Unknown platform", heading="Unknown platform",
                        message="There is no configuration profile for this platform.",
                        next_step="Choose ios, macos-app-store or macos-standalone on the Apple page.",
                        reason="platform", code=400, tone="bad", **_base())
        body = mobileconfig(platform, _svc().cfg.server_url)
        return Response(body, content_type="application/x-apple-aspen-config; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="headscale-{platform}.mobileconfig"'})

    @bp.get("/register/<auth_id>")
    async def register(auth_id: str):
        if not is_auth_id(auth_id):
            return error_page("invalid_id", 400, "malformed registration id")
        oidc = _svc().oidc
        pending = _svc().registrar.pending.get(auth_id)
        if oidc is None:
            # As headscale: the command is shown for any well-formed id (the admin's CLI says
            # whether it is still pending); a known one also names the machine.
            hostname = str(pending.hostinfo.get("Hostname") or "") if pending is not None else ""
            return page("register.html", title="Machine registration", auth_id=auth_id, hostname=hostname,
                        **_base())
        return _begin(oidc, auth_id, registration=True)

    @bp.get("/auth/<auth_id>")
    async def auth(auth_id: str):
        if not is_auth_id(auth_id):
            return error_page("invalid_id", 400, "malformed auth id")
        oidc = _svc().oidc
        if oidc is None:
            return page("ssh_check.html", title="SSH check", auth_id=auth_id, **_base())
        return _begin(oidc, auth_id, registration=False)

    def _begin(oidc, auth_id: str, *, registration: bool) -> Response:
        from app.service.oidc import FlowError

        try:
            url, cookies = oidc.begin(auth_id, registration=registration)
        except FlowError as exc:
            return error_page(exc.reason, exc.status, exc.detail)
        resp = redirect(url, 302)
        resp.headers["Cache-Control"] = "no-store"
        return _set_cookies(resp, cookies)

    @bp.get("/oidc/callback")
    async def callback():
        from app.service.oidc import CONFIRM_COOKIE, FlowError

        oidc = _svc().oidc
        if oidc is None:
            return error_page("unavailable", 404, "OIDC is not configured")
        args = {k: v for k, v in request.args.items() if k in ("code", "state", "error")}
        try:
            signed = await oidc.callback(args, dict(request.cookies))
        except FlowError as exc:
            return error_page(exc.reason, exc.status, exc.detail)
        if signed.console:
            console = getattr(_svc(), "console", None)
            if console is None:
                return error_page("unavailable", 404, "the web console is off (console.enabled)")
            return console.signed_in(f"{_who(signed.user)}, OIDC")
        user = _who(signed.user)
        if not signed.registration:
            return page("success.html", title="SSH session authorized", heading="SSH session authorized",
                        verb="Authorized", user=user, machine="", tone="good",
                        message="You may return to your terminal.", **_base())
        pending = oidc.pending_registration(signed.auth_id)
        hostinfo = pending.hostinfo if pending is not None else {}
        resp = page("confirm.html", title="Confirm machine registration",
                    hostname=str(hostinfo.get("Hostname") or ""), os=str(hostinfo.get("OS") or ""),
                    machine_key=keys.short(pending.machine_key) if pending is not None else "",
                    user=user, action=f"/register/confirm/{signed.auth_id}", csrf_name=CONFIRM_COOKIE,
                    csrf=signed.confirmation.csrf, **_base())
        return _set_cookies(resp, signed.cookies)

    @bp.post("/register/confirm/<auth_id>")
    async def confirm(auth_id: str):
        from app.service.oidc import CONFIRM_COOKIE, FlowError

        oidc = _svc().oidc
        if not is_auth_id(auth_id):
            return error_page("invalid_id", 400, "malformed registration id")
        if oidc is None:
            return error_page("unavailable", 404, "OIDC is not configured")
        if (request.content_length or 0) > MAX_FORM:
            return error_page("csrf", 413, "confirmation form too large")
        form = await request.form
        try:
            user, node, new = await oidc.confirm(auth_id, form.get(CONFIRM_COOKIE, ""),
                                                 request.cookies.get(CONFIRM_COOKIE, ""))
        except FlowError as exc:
            return error_page(exc.reason, exc.status, exc.detail)
        resp = page("success.html", title="Machine registered" if new else "Machine re-authenticated",
                    heading="Machine registered" if new else "Machine re-authenticated",
                    verb="Registered" if new else "Re-authenticated", tone="good",
                    user=_who(user), machine=node.given_name or node.hostname,
                    message="The machine connects by itself now; you can close this window.", **_base())
        resp.delete_cookie(CONFIRM_COOKIE, path=f"/register/confirm/{auth_id}")
        return resp

    return bp
