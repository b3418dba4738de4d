"""Create or update the user behind a verified OIDC identity (headscale's createOrUpdateUserFromClaim).

The user is found by provider identifier (``iss``/``sub``) only, never by name or e-mail, so a
person cannot take over another account by choosing a matching username at the provider. A new
user is named from ``preferred_username``; when the provider sends none that is a valid
headscale user name, the verified e-mail address is used instead (headscale 0.29 would refuse
the sign-in). An existing user keeps its name when the new claims carry no valid one.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from app.core.model import RegisterMethod, User
from app.core.usernames import valid_username
from app.service.changes import Change
from app.store.errors import NotFound


class UserRefused(Exception):
    """The claims cannot make a user (no usable name)."""


async def save_user(state, fields: dict[str, Any]) -> User:
    ident = fields["provider_identifier"]
    if not ident:
        raise UserRefused("the identity has neither issuer nor subject")
    async with state.lock:
        try:
            existing = await state.db.get_user_by_provider_identifier(ident)
        except NotFound:
            existing = None
        name = fields["name"] or (fields["email"] if valid_username(fields["email"]) else None)
        if existing is None:
            if not name:
                raise UserRefused("the identity provider sent no usable user name (preferred_username) "
                                  "and no verified e-mail address")
            user = await state.db.create_user(
                name, display_name=fields["display_name"], email=fields["email"], provider_identifier=ident,
                provider=RegisterMethod.OIDC, profile_pic_url=fields["profile_pic_url"])
            owned: set[int] = set()
        else:
            wanted = dataclasses.replace(
                existing, name=name or existing.name, display_name=fields["display_name"],
                email=fields["email"], provider_identifier=ident, provider=RegisterMethod.OIDC,
                profile_pic_url=fields["profile_pic_url"])
            if wanted == existing:
                return state.users.get(existing.id, existing)
            user = await state.db.update_user(wanted)
            owned = {n.id for n in state.nodes.values() if n.user_id == user.id}
        state.users[user.id] = user
        # Peers show the owner's name and picture: resend the user's nodes; policies name users.
        policy = state._refresh_policy_nodes()
        state._emit(Change(policy=policy, peers_changed=owned, self_changed=owned))
        return user
