"""The built-in web console at ``/admin`` (``console.enabled``).

Server-rendered pages (Jinja2, autoescaped) with a little JavaScript, every asset served from
this package (templates/, static/) under a strict Content-Security-Policy. Signing in takes an
API key (``headscale apikeys create``); the session, its cookie and CSRF rules are in
session.py. Every change calls the same service methods as the REST API (State, PolicyService,
Registrar, SSHChecks), so connected nodes see it at once.

Pages: machines.py (machines, users, pre-auth keys), tailnet.py (policy, pending requests,
DERP and metrics).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from quart import Blueprint, Response, redirect, render_template, request

from app.server.console.session import Session, Sessions, csrf_ok, same_origin
from app.store.errors import StoreError

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
PUBLIC = ("console.login", "console.static", "console.oidc_start")


class Console:
    """What the page modules share: services, sessions and small helpers."""

    def __init__(self, services: Any) -> None:
        self.services = services
        self.state = services.state
        self.sessions = Sessions(urlsplit(services.cfg.server_url).scheme == "https")

    def session(self) -> Session | None:
        return request.scope.get("headscale.console")

    def flash(self, kind: str, text: str) -> None:
        s = self.session()
        if s is not None:
            s.flash.append((kind, text))

    async def render(self, template: str, status: int = 200, **ctx: Any) -> Response:
        s = self.session()
        flashes: list[tuple[str, str]] = []
        if s is not None:
            flashes, s.flash = s.flash, []
        html = await render_template(f"console/{template}", session=s, flashes=flashes,
                                     csrf=s.csrf if s else "", server_url=self.services.cfg.server_url,
                                     active=request.endpoint or "", **ctx)
        return Response(html, status=status, content_type="text/html; charset=utf-8")

    def back(self, endpoint_url: str) -> Response:
        return redirect(endpoint_url, code=303)

    def oidc_offered(self) -> bool:
        oidc = getattr(self.services, "oidc", None)
        return oidc is not None and bool(getattr(oidc, "console_admins", None))

    def signed_in(self, who: str, *, api_key_id: int | None = None, key_expires=None) -> Response:
        """A new session (the old one of this browser ends) and the way into the console. After
        an OIDC round trip (no API key) the browser arrived from the provider's site, and a
        SameSite=Strict cookie is not sent on redirects of that navigation: a page of ours
        moves on instead (meta refresh), which makes the next request same-site."""
        self.sessions.end(request.cookies.get(self.sessions.cookie))
        s = self.sessions.create(who, api_key_id=api_key_id, key_expires=key_expires, now=self.state.now())
        if api_key_id is None:
            resp = Response(
                '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
                '<meta http-equiv="refresh" content="0;url=/admin/machines"><title>Signed in</title>'
                '<link rel="stylesheet" href="/admin/static/console.css"></head><body><main>'
                '<p>Signed in. <a href="/admin/machines">Continue to the console</a>.</p></main></body></html>',
                content_type="text/html; charset=utf-8")
            resp.headers["Content-Security-Policy"] = CSP
            resp.headers["Cache-Control"] = "no-store"
        else:
            resp = redirect("/admin/machines", code=303)
        resp.set_cookie(**self.sessions.cookie_args(s.sid))
        return resp


def console_blueprint(services: Any) -> Blueprint:
    bp = Blueprint("console", __name__, url_prefix="/admin", template_folder="templates",
                   static_folder="static", static_url_path="/static")
    c = Console(services)
    services.console = c      # the OIDC callback (app.server.pages) signs administrators in here

    @bp.before_request
    async def guard():
        s = c.sessions.get(request.cookies.get(c.sessions.cookie))
        if s is not None and s.api_key_id is not None and not await _key_valid(c, s.api_key_id):
            c.sessions.end(s.sid)
            s = None
        request.scope["headscale.console"] = s
        if request.endpoint in PUBLIC:
            return None
        if s is None:
            if request.method == "GET" and not request.path.endswith(".json"):
                return redirect("/admin/login", code=303)
            return Response("sign in first", status=401, content_type="text/plain")
        if request.method not in ("GET", "HEAD"):
            form = await request.form
            token = form.get("csrf") or request.headers.get("X-CSRF-Token")
            if not csrf_ok(s, token) or not same_origin(request.headers.get("Origin"), request.host):
                return Response("the form was stale or came from another site: reload the page and try again",
                                status=403, content_type="text/plain")
        return None

    @bp.after_request
    async def headers(resp: Response):
        resp.headers["Content-Security-Policy"] = CSP
        resp.headers["Cache-Control"] = "no-store"
        resp.headers["X-Frame-Options"] = "DENY"
        # "no-referrer" (the site default) would make browsers send "Origin: null" on our own POSTs.
        resp.headers["Referrer-Policy"] = "same-origin"
        return resp

    @bp.get("/")
    async def home():
        return redirect("/admin/machines", code=303)

    @bp.route("/login", methods=["GET", "POST"])
    async def login():
        error = ""
        if request.method == "POST":
            form = await request.form
            if not same_origin(request.headers.get("Origin"), request.host):
                return Response("sign-in from another site refused", status=403, content_type="text/plain")
            key = (form.get("api_key") or "").strip()
            try:
                k = await c.state.db.validate_api_key(key)
            except StoreError:
                k = None
            now = c.state.now()
            if k is None or k.is_expired(now):
                error = "That API key is not valid (wrong, expired or deleted). Create one with " \
                        "`headscale apikeys create` and paste it here."
            else:
                return c.signed_in(f"API key {k.masked.rstrip('*-')}…", api_key_id=k.id,
                                   key_expires=k.expiration if k.expiration and k.expiration.year > 1 else None)
        return await c.render("login.html", status=401 if error else 200, error=error, oidc=c.oidc_offered())

    @bp.get("/oidc")
    async def oidc_start():
        """Administrators sign in with OIDC (console.oidc_admins); back through /oidc/callback."""
        from app.service.oidc import FlowError

        if not c.oidc_offered():
            return Response("OIDC sign-in to the console is not configured (oidc.issuer and "
                            "console.oidc_admins)", status=404, content_type="text/plain")
        try:
            url, cookies = services.oidc.begin("", registration=False, console=True)
        except FlowError as exc:
            return Response(f"sign-in is unavailable: {exc.reason}; try again in a minute", status=exc.status,
                            content_type="text/plain")
        resp = redirect(url, code=302)
        for ck in cookies:
            resp.set_cookie(ck.name, ck.value, max_age=ck.max_age, path=ck.path, secure=c.sessions.secure,
                            httponly=True, samesite=ck.samesite)
        return resp

    @bp.post("/logout")
    async def logout():
        s = c.session()
        if s is not None:
            c.sessions.end(s.sid)
        resp = redirect("/admin/login", code=303)
        resp.delete_cookie(c.sessions.cookie, path="/", secure=c.sessions.secure, httponly=True, samesite="Strict")
        return resp

    from app.server.console import machines, tailnet

    machines.register(bp, c)
    tailnet.register(bp, c)
    return bp


async def _key_valid(c: Console, key_id: int) -> bool:
    try:
        k = await c.state.db.get_api_key(key_id)
    except StoreError:
        return False
    return not k.is_expired(c.state.now())
