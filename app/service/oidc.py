"""Signing in with OpenID Connect (headscale 0.29's flow).

1. ``begin``: a browser opens ``/register/<auth-id>`` (a waiting machine) or ``/auth/<auth-id>``
   (an SSH check). We mint ``state`` and ``nonce``, bind both to the browser with short-lived
   HttpOnly SameSite=Lax cookies scoped to /oidc/callback, remember (state -> sign-in) for 15
   minutes, and redirect to the provider (with a PKCE challenge when enabled).
2. ``callback``: the provider sends the browser back with ``code`` and ``state``. The state must
   equal its cookie and name a sign-in we started and have not finished (else: replayed or
   expired); the code is exchanged once; the ID token is verified (app/core/oidc/tokens.py) and
   its nonce must equal the nonce cookie; userinfo completes the claims; the allow-lists decide;
   the user is created or updated by provider identifier. A registration then shows a
   confirmation page (headscale 0.29's interstitial: a silent SSO must not admit a machine
   without a click); an SSH check is approved only when the signed-in user owns its source node.
3. ``confirm``: the confirmation form's CSRF token must equal its cookie and the one stored for
   this auth id; the waiting machine is registered to the user, and its client finishes by itself.

Every failure raises FlowError: a reason code for the page, and a log line without secrets.
Nothing is changed before a failure is detected.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime

from app.core.model import RegisterMethod, User
from app.core.oidc import claims as oidc_claims
from app.core.oidc import flow, tokens
from app.service.errors import NotFound
from app.service.oidc_http import ProviderError
from app.service.oidc_provider import OIDCProvider, Unavailable
from app.service.oidc_users import UserRefused, save_user
from app.store.errors import StoreError

log = logging.getLogger("headscale.oidc")

LOGIN_TTL = 15 * 60
MAX_LOGINS = 1024
COOKIE_MAX_AGE = 60 * 60
CONFIRM_COOKIE = "headscale_register_confirm"


class FlowError(Exception):
    """A sign-in that cannot go on. ``reason`` picks the page; ``detail`` is for the log only."""

    def __init__(self, reason: str, detail: str = "", status: int = 400) -> None:
        super().__init__(detail or reason)
        self.reason = reason
        self.detail = detail
        self.status = status


@dataclass
class Login:
    state: str
    nonce: str
    auth_id: str
    registration: bool
    verifier: str | None
    created: float
    used: bool = False
    console: bool = False        # a web-console sign-in (no machine, no SSH check)


@dataclass
class Cookie:
    name: str
    value: str
    path: str
    max_age: int
    samesite: str = "Lax"


@dataclass
class Confirmation:
    auth_id: str
    user_id: int
    expiry: datetime | None
    csrf: str
    created: float


@dataclass
class Signed:
    """The outcome of a good callback."""

    user: User
    auth_id: str
    registration: bool
    confirmation: Confirmation | None = None
    cookies: list[Cookie] = field(default_factory=list)
    console: bool = False        # an administrator signing in to the web console


@dataclass
class OIDCPolicy:
    allowed_domains: list[str]
    allowed_users: list[str]
    allowed_groups: list[str]
    email_verified_required: bool
    use_expiry_from_token: bool


class OIDCLogin:
    def __init__(self, provider: OIDCProvider, policy: OIDCPolicy, state, registrar, ssh_checks,
                 *, clock=time.time, console_admins: list[str] | None = None) -> None:
        self.provider = provider
        # console.oidc_admins: e-mail addresses, usernames or group:<name> (web console sign-in)
        self.console_admins = [a.strip() for a in console_admins or [] if a.strip()]
        self.policy = policy
        self.state = state
        self.registrar = registrar
        self.ssh_checks = ssh_checks
        self.clock = clock
        self.logins: OrderedDict[str, Login] = OrderedDict()
        self.confirmations: dict[str, Confirmation] = {}

    # ---- bookkeeping ---------------------------------------------------------------------------

    def _gc(self) -> None:
        now = self.clock()
        for key, login in list(self.logins.items()):
            if now - login.created > LOGIN_TTL:
                del self.logins[key]
        for key, conf in list(self.confirmations.items()):
            if now - conf.created > LOGIN_TTL:
                del self.confirmations[key]
        while len(self.logins) >= MAX_LOGINS:   # bounded: unauthenticated GETs mint these
            self.logins.popitem(last=False)

    def pending_registration(self, auth_id: str):
        p = self.registrar.pending.get(auth_id)
        return p if p is not None and not p.done.is_set() else None

    def _pending_check(self, auth_id: str):
        return self.ssh_checks.pending.get(auth_id) if self.ssh_checks is not None else None

    # ---- 1. begin ----------------------------------------------------------------------------

    def begin(self, auth_id: str, *, registration: bool, console: bool = False) -> tuple[str, list[Cookie]]:
        """(provider URL to redirect to, cookies to set). FlowError when the id is unknown or
        the provider has not answered discovery. ``console``: an administrator signing in to the
        web console (no auth id; only when console.oidc_admins lists someone)."""
        if console:
            if not self.console_admins:
                raise FlowError("unavailable", "console.oidc_admins is empty", 404)
        else:
            known = self.pending_registration(auth_id) if registration else self._pending_check(auth_id)
            if known is None:
                raise FlowError("unknown_request", "unknown or expired auth id", 404)
        if not self.provider.available:
            raise FlowError("unavailable", self.provider.last_error or "provider not discovered", 503)
        self._gc()
        state, nonce = flow.random_token(), flow.random_token()
        verifier = flow.pkce_verifier() if self.provider.s.pkce_method else None
        challenge = flow.pkce_challenge(verifier, self.provider.s.pkce_method) if verifier else None
        try:
            url = self.provider.authorization_url(state=state, nonce=nonce, challenge=challenge)
        except Unavailable as exc:
            raise FlowError("unavailable", str(exc), 503) from None
        self.logins[state] = Login(state, nonce, auth_id, registration, verifier, self.clock(), console=console)
        cookies = [Cookie(flow.cookie_name(kind, value), value, "/oidc/callback", COOKIE_MAX_AGE)
                   for kind, value in (("state", state), ("nonce", nonce))]
        return url, cookies

    # ---- 2. callback -------------------------------------------------------------------------

    async def callback(self, args: dict[str, str], cookies: dict[str, str]) -> Signed:
        state = args.get("state", "")
        if args.get("error"):
            # The provider refused (e.g. access_denied when the person pressed "cancel").
            login = self.logins.pop(state, None) if state else None
            if login is not None:
                login.used = True
            error = args["error"][:64]
            reason = "provider_error" if error in ("access_denied", "login_required", "consent_required",
                                                   "interaction_required") else "provider_refused"
            raise FlowError(reason, f"provider answered error={error!r}", 403)
        code = args.get("code", "")
        if not code or len(state) < 6:
            raise FlowError("bad_callback", "missing code or state", 400)
        cookie = cookies.get(flow.cookie_name("state", state), "")
        if not cookie or not hmac.compare_digest(cookie.encode(), state.encode()):
            raise FlowError("state_mismatch", "state cookie missing or different", 403)
        login = self.logins.get(state)
        if login is None or login.used or self.clock() - login.created > LOGIN_TTL:
            raise FlowError("replayed", "sign-in already finished, expired or unknown", 410)
        login.used = True   # before any await: a second request with the same state is a replay
        if login.registration and self.pending_registration(login.auth_id) is None:
            raise FlowError("unknown_request", "the machine's login request expired", 410)
        if not login.registration and not login.console and self._pending_check(login.auth_id) is None:
            raise FlowError("unknown_request", "the SSH check expired", 410)
        try:
            resp = await self.provider.exchange(code, login.verifier)
        except Unavailable as exc:
            raise FlowError("unavailable", str(exc), 503) from None
        except ProviderError as exc:
            reason = "unavailable" if exc.status == 0 or exc.status >= 500 else "exchange_failed"
            raise FlowError(reason, f"code exchange failed: {exc}", 502 if reason == "unavailable" else 403) from None
        raw = resp.get("id_token")
        if not isinstance(raw, str):
            raise FlowError("token_invalid", "the token response has no id_token", 403)
        try:
            verified = await self.provider.verify(raw, login.nonce)
        except tokens.TokenError as exc:
            reason = "nonce_mismatch" if "nonce" in str(exc) else "token_invalid"
            raise FlowError(reason, str(exc), 403) from None
        except ProviderError as exc:
            raise FlowError("unavailable", f"JWKS refetch failed: {exc}", 502) from None
        # The token's nonce is the sign-in's (checked above); it must also be this browser's.
        nonce_cookie = cookies.get(flow.cookie_name("nonce", login.nonce), "")
        if not nonce_cookie or not hmac.compare_digest(nonce_cookie.encode(), login.nonce.encode()):
            raise FlowError("nonce_mismatch", "nonce cookie missing or different", 403)
        claims = oidc_claims.from_token(verified)
        access = resp.get("access_token")
        claims = oidc_claims.merge_userinfo(
            claims, await self.provider.userinfo(access if isinstance(access, str) else ""))
        p = self.policy
        try:
            oidc_claims.authorize(claims, allowed_groups=p.allowed_groups, allowed_domains=p.allowed_domains,
                                  allowed_users=p.allowed_users, email_verified_required=p.email_verified_required)
        except oidc_claims.Denied as exc:
            raise FlowError(f"denied_{exc.reason}", f"{oidc_claims.identifier(claims)}: {exc}", 403) from None
        if login.console:
            return self._console_admin(claims)
        fields = oidc_claims.user_fields(claims, email_verified_required=p.email_verified_required)
        try:
            user = await save_user(self.state, fields)
        except UserRefused as exc:
            raise FlowError("user_refused", str(exc), 403) from None
        except StoreError as exc:
            raise FlowError("user_refused", f"the user could not be saved: {exc}", 409) from None
        if not login.registration:
            return self._approve_ssh(login.auth_id, user)
        expiry = None
        if p.use_expiry_from_token and claims.exp is not None:
            expiry = datetime.fromtimestamp(claims.exp, UTC)
        conf = Confirmation(login.auth_id, user.id, expiry, flow.random_token(), self.clock())
        self.confirmations[login.auth_id] = conf
        cookie = Cookie(CONFIRM_COOKIE, conf.csrf, f"/register/confirm/{login.auth_id}", LOGIN_TTL, "Strict")
        return Signed(user, login.auth_id, True, conf, [cookie])

    def _console_admin(self, claims) -> Signed:
        """A console sign-in is let in only when console.oidc_admins names the account; it
        creates no tailnet user (the returned User is not stored)."""
        email = (claims.email if claims.email_verified or not self.policy.email_verified_required else "").lower()
        names = {a.lower() for a in self.console_admins}
        if not ((email and email in names) or (claims.username and claims.username.lower() in names)
                or any(f"group:{g}".lower() in names for g in claims.groups)):
            raise FlowError("denied_console", f"{oidc_claims.identifier(claims)} is not in console.oidc_admins", 403)
        shown = User(0, claims.username or email or claims.sub, display_name=claims.name, email=email)
        return Signed(shown, "", False, console=True)

    def _approve_ssh(self, auth_id: str, user: User) -> Signed:
        req = self._pending_check(auth_id)
        if req is None:
            raise FlowError("unknown_request", "the SSH check expired", 410)
        src = self.state.nodes.get(req.src)
        if src is None:
            raise FlowError("unknown_request", "the SSH source node no longer exists", 410)
        if src.is_tagged or src.user_id != user.id:
            raise FlowError("not_owner", f"user {user.id} does not own SSH source node {src.id}", 403)
        self.ssh_checks.decide(auth_id, approve=True)
        # (the auth id stays out of the log, as in the request log: it is the link's only secret)
        log.info("SSH check from node %s approved by its owner, user %s (%s)", src.id, user.id, user.login_name)
        return Signed(user, auth_id, False)

    # ---- 3. confirm --------------------------------------------------------------------------

    async def confirm(self, auth_id: str, form_csrf: str, cookie_csrf: str):
        """(user, node, new) after the person confirmed the registration."""
        if not form_csrf or not cookie_csrf or not hmac.compare_digest(form_csrf.encode(), cookie_csrf.encode()):
            raise FlowError("csrf", "confirmation token missing or different from its cookie", 403)
        conf = self.confirmations.get(auth_id)
        if conf is None or self.clock() - conf.created > LOGIN_TTL:
            raise FlowError("unknown_request", "no signed-in registration waits for this id", 410)
        if not hmac.compare_digest(conf.csrf.encode(), cookie_csrf.encode()):
            raise FlowError("csrf", "confirmation token belongs to another sign-in", 403)
        return await self._finish(conf)

    async def _finish(self, conf: Confirmation):
        pending = self.pending_registration(conf.auth_id)
        user = self.state.users.get(conf.user_id)
        if pending is None or user is None:
            self.confirmations.pop(conf.auth_id, None)
            raise FlowError("unknown_request", "the machine's login request expired", 410)
        new = not any(n.user_id == user.id for n in self.state.nodes_of_machine(pending.machine_key))
        try:
            node = await self.registrar.complete(conf.auth_id, user, method=RegisterMethod.OIDC, expiry=conf.expiry)
        except NotFound:
            raise FlowError("unknown_request", "the machine's login request expired", 410) from None
        self.confirmations.pop(conf.auth_id, None)
        log.info("node %s %s for user %s (%s) by OIDC sign-in", node.id,
                 "registered" if new else "re-authenticated", user.id, user.login_name)
        return user, node, new

    # ---- `headscale auth approve|reject` -------------------------------------------------------

    async def approve(self, auth_id: str):
        """An admin approves a web login whose person signed in but has not confirmed yet."""
        conf = self.confirmations.get(auth_id)
        if conf is None:
            raise NotFound(f"login {auth_id!r} has no signed-in user yet: register it with "
                           f"`headscale auth register --auth-id {auth_id} --user <user>`")
        try:
            return await self._finish(conf)
        except FlowError as exc:
            raise NotFound(f"login {auth_id!r} expired ({exc.detail})") from None

    def forget(self, auth_id: str) -> None:
        self.confirmations.pop(auth_id, None)

