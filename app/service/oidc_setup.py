"""OIDC from the configuration: build the provider and the sign-in flow, and discover at start-up."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from app.service.oidc import OIDCLogin, OIDCPolicy
from app.service.oidc_http import ProviderError
from app.service.oidc_provider import ClientSettings, OIDCProvider

log = logging.getLogger("headscale.oidc")


def provider_from_config(cfg: Any) -> OIDCProvider | None:
    """None when ``oidc.issuer`` is empty (sign-in stays with `headscale auth register`)."""
    o = cfg.oidc
    if not o.issuer:
        return None
    from app.config import read_oidc_client_secret

    try:
        secret = read_oidc_client_secret(cfg)
    except OSError as exc:
        raise SystemExit(f"error: oidc.client_secret_path: cannot read the client secret: {exc.strerror}") from None
    return OIDCProvider(ClientSettings(
        issuer=o.issuer, client_id=o.client_id, client_secret=secret,
        redirect_uri=cfg.server_url.rstrip("/") + "/oidc/callback",
        scope=tuple(o.scope or ["openid"]),
        extra_params=tuple(sorted((str(k), str(v)) for k, v in (o.extra_params or {}).items())),
        pkce_method=str(o.pkce.method) if o.pkce.enabled else None,
    ))


def login_from_config(cfg: Any, provider: OIDCProvider, state, registrar, ssh_checks) -> OIDCLogin:
    o = cfg.oidc
    policy = OIDCPolicy(
        allowed_domains=list(o.allowed_domains or []), allowed_users=list(o.allowed_users or []),
        allowed_groups=list(o.allowed_groups or []),
        email_verified_required=bool(o.email_verified_required),
        use_expiry_from_token=bool(o.use_expiry_from_token),
    )
    return OIDCLogin(provider, policy, state, registrar, ssh_checks,
                     console_admins=list(cfg.get("console.oidc_admins") or []))


async def discover_at_start(provider: OIDCProvider, only_start_if_available: bool) -> asyncio.Task | None:
    """Discovery before anything else opens. Returns the retry task when the provider is down
    and start-up goes on; raises SystemExit (one line) when it must not."""
    try:
        await provider.discover()
    except ProviderError as exc:
        provider.last_error = str(exc)
        if only_start_if_available:
            raise SystemExit(
                f"error: OIDC provider {provider.s.issuer} is not available: {exc} (start it, fix oidc.issuer, "
                "or set oidc.only_start_if_oidc_is_available: false to start without it)") from None
        log.warning("OIDC provider %s is not available: %s; starting anyway, sign-in is unavailable "
                    "until it answers (retrying with backoff)", provider.s.issuer, exc)
        return asyncio.get_running_loop().create_task(provider.retry_forever(), name="oidc-discovery")
    log.info("OIDC sign-in enabled with %s", provider.s.issuer)
    return None
