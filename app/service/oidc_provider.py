"""One configured OpenID provider: discovery, the JWKS cache, code exchange, userinfo.

Discovery runs at start-up. With ``only_start_if_oidc_is_available`` a provider that does not
answer stops the start (serve prints one line); without it the server starts anyway and
``retry_forever`` rediscovers with exponential backoff (1 s doubling to 60 s) until the
provider answers; meanwhile sign-in pages say that sign-in is unavailable.

The JWKS is fetched with discovery and cached; a token signed with a ``kid`` the cache does not
hold triggers one refetch (key rotation); refetches happen at most once every REFETCH_GAP seconds
so that tokens naming made-up keys cannot make us hammer the provider.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from app.core.oidc import flow, tokens
from app.service import oidc_http
from app.service.oidc_http import ProviderError

log = logging.getLogger("headscale.oidc")

REFETCH_GAP = 10.0
BACKOFF_MAX = 60.0


@dataclass(frozen=True)
class ClientSettings:
    issuer: str
    client_id: str
    client_secret: str
    redirect_uri: str
    scope: tuple[str, ...]
    extra_params: tuple[tuple[str, str], ...] = ()
    pkce_method: str | None = None          # None: PKCE off; else "S256" or "plain"


class Unavailable(Exception):
    """Discovery has not succeeded (yet)."""


class OIDCProvider:
    def __init__(self, settings: ClientSettings, *, clock=time.time) -> None:
        self.s = settings
        self.clock = clock
        self.endpoints: flow.Endpoints | None = None
        self.keys = None
        self.last_error = ""
        self._refetched_at = float("-inf")   # the last refetch for an unknown kid
        self._lock = asyncio.Lock()

    @property
    def available(self) -> bool:
        return self.endpoints is not None and self.keys is not None

    async def discover(self) -> None:
        doc = await oidc_http.get_json(flow.discovery_url(self.s.issuer))
        try:
            endpoints = flow.parse_discovery(doc, self.s.issuer)
        except flow.DiscoveryError as exc:
            raise ProviderError(str(exc)) from None
        keys = await self._fetch_jwks(endpoints)
        self.endpoints, self.keys, self.last_error = endpoints, keys, ""

    async def _fetch_jwks(self, endpoints: flow.Endpoints):
        doc = await oidc_http.get_json(endpoints.jwks_uri)
        try:
            keys = tokens.parse_jwks(doc)
        except tokens.TokenError as exc:
            raise ProviderError(str(exc)) from None
        return keys

    async def retry_forever(self, first_delay: float = 1.0) -> None:
        delay = first_delay
        while not self.available:
            await asyncio.sleep(delay)
            try:
                await self.discover()
            except ProviderError as exc:
                self.last_error = str(exc)
                log.warning("OIDC provider %s still unavailable (next try in %.0f s): %s",
                            self.s.issuer, min(delay * 2, BACKOFF_MAX), exc)
                delay = min(delay * 2, BACKOFF_MAX)
            else:
                log.info("OIDC provider %s is available; sign-in works now", self.s.issuer)

    def require(self) -> flow.Endpoints:
        if self.endpoints is None:
            raise Unavailable(self.last_error or "the identity provider has not answered yet")
        return self.endpoints

    # ---- the authorization-code flow ---------------------------------------------------------

    def authorization_url(self, *, state: str, nonce: str, challenge: str | None) -> str:
        ep = self.require()
        pkce = (challenge, self.s.pkce_method) if challenge and self.s.pkce_method else None
        return flow.authorization_url(ep, client_id=self.s.client_id, redirect_uri=self.s.redirect_uri,
                                      scope=list(self.s.scope), state=state, nonce=nonce, pkce=pkce,
                                      extra_params=dict(self.s.extra_params))

    async def exchange(self, code: str, verifier: str | None) -> dict[str, Any]:
        ep = self.require()
        form, headers = flow.token_request(ep, client_id=self.s.client_id, client_secret=self.s.client_secret,
                                           code=code, redirect_uri=self.s.redirect_uri, verifier=verifier)
        resp = await oidc_http.post_form(ep.token_endpoint, form, headers)
        if not isinstance(resp, dict):
            raise ProviderError("the token endpoint answered with something other than a JSON object")
        return resp

    async def verify(self, raw: str, nonce: str) -> dict[str, Any]:
        ep = self.require()
        algs = tokens.allowed_algs(list(ep.id_token_algs))
        args = {"issuer": self.s.issuer, "client_id": self.s.client_id, "nonce": nonce, "algs": algs}
        try:
            return tokens.verify_id_token(raw, self.keys, now=self.clock(), **args)
        except tokens.UnknownKey:
            async with self._lock:
                if self.clock() - self._refetched_at >= REFETCH_GAP:
                    log.info("ID token signed with an unknown key; refetching the provider's JWKS")
                    self._refetched_at = self.clock()
                    self.keys = await self._fetch_jwks(ep)
            return tokens.verify_id_token(raw, self.keys, now=self.clock(), **args)

    async def userinfo(self, access_token: str) -> dict[str, Any] | None:
        ep = self.endpoints
        if ep is None or not ep.userinfo_endpoint or not access_token:
            return None
        try:
            info = await oidc_http.get_json(ep.userinfo_endpoint, bearer=access_token)
        except ProviderError as exc:
            log.info("could not get userinfo; using the ID token's claims only: %s", exc)
            return None
        return info if isinstance(info, dict) else None
