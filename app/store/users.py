"""users table ↔ app.core.model.User.

headscale semantics kept: names are validated (``validate_username``); local users (no
provider identifier) have unique names; OIDC users cannot be renamed; a user who still owns
nodes cannot be deleted, and deleting a user deletes their pre-auth keys (nodes registered
with those keys keep running with ``auth_key_id`` cleared). Rows soft-deleted by older
headscale releases (``deleted_at`` set) are invisible, as under GORM's default scope.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from app.core.model import RegisterMethod, User

from .base import IntegrityErrors, QueryBase, integrity_error
from .codec import format_time, parse_time
from .errors import Conflict, Invalid, NotFound

USER_COLUMNS = "id, name, display_name, email, provider_identifier, provider, profile_pic_url, created_at"
_LIVE = "deleted_at IS NULL"


def _is_letter(ch: str) -> bool:
    return unicodedata.category(ch).startswith("L")


def _is_digit(ch: str) -> bool:
    return unicodedata.category(ch) == "Nd"


def validate_username(name: str) -> None:
    """headscale's rule: at least 2 bytes, starts with a letter, then letters, digits, ``-._``
    and at most one ``@``."""
    if len(name.encode()) < 2:
        raise Invalid("username must be at least 2 characters long", entity="user")
    if not _is_letter(chr(name.encode()[0])):
        # headscale tests the first *byte* read as a code point, so this is byte-exact
        raise Invalid("username must start with a letter", entity="user")
    at = 0
    for ch in name:
        if _is_letter(ch) or _is_digit(ch) or ch in "-._":
            continue
        if ch == "@":
            at += 1
            if at > 1:
                raise Invalid("username cannot contain more than one '@'", entity="user")
            continue
        raise Invalid(f"username contains invalid character: {ch!r}", entity="user")


def user_from_row(row: Any) -> User:
    return User(
        id=row[0],
        name=row[1] or "",
        display_name=row[2] or "",
        email=row[3] or "",
        provider_identifier=row[4],
        provider=row[5] or "",
        profile_pic_url=row[6] or "",
        created_at=parse_time(row[7]),
    )


class UserQueries(QueryBase):
    async def create_user(
        self,
        name: str,
        *,
        display_name: str = "",
        email: str = "",
        provider_identifier: str | None = None,
        provider: str = "",
        profile_pic_url: str = "",
    ) -> User:
        validate_username(name)
        now = format_time(self._now())
        try:
            async with self._write() as conn:
                cur = await conn.execute(
                    "INSERT INTO users (name, display_name, email, provider_identifier, provider,"
                    " profile_pic_url, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (name, display_name, email, provider_identifier, provider, profile_pic_url, now, now),
                )
                user_id = cur.lastrowid
        except IntegrityErrors as exc:
            raise integrity_error(exc, "user") from None
        return await self.get_user(int(user_id or 0))

    async def get_user(self, user_id: int) -> User:
        row = await self._fetchone(f"SELECT {USER_COLUMNS} FROM users WHERE id = ? AND {_LIVE}", (user_id,))
        if row is None:
            raise NotFound(f"user {user_id} not found", entity="user")
        return user_from_row(row)

    async def get_user_by_name(self, name: str) -> User:
        """The one user with this name (OIDC users from different providers may share one)."""
        users = await self.list_users(name=name)
        if not users:
            raise NotFound(f"user {name!r} not found", entity="user")
        if len(users) > 1:
            raise Conflict(f"{len(users)} users are named {name!r}; use the id", entity="user")
        return users[0]

    async def get_user_by_provider_identifier(self, identifier: str) -> User:
        row = await self._fetchone(
            f"SELECT {USER_COLUMNS} FROM users WHERE provider_identifier = ? AND {_LIVE}", (identifier,)
        )
        if row is None:
            raise NotFound("user not found", entity="user")
        return user_from_row(row)

    async def list_users(
        self, *, id: int | None = None, name: str | None = None, email: str | None = None
    ) -> list[User]:
        """All users by id; each given filter must match (headscale ignores empty ones)."""
        where, params = [_LIVE], []
        for column, value in (("id", id), ("name", name), ("email", email)):
            if value:
                where.append(f"{column} = ?")
                params.append(value)
        rows = await self._fetchall(
            f"SELECT {USER_COLUMNS} FROM users WHERE {' AND '.join(where)} ORDER BY id", params
        )
        return [user_from_row(r) for r in rows]

    async def rename_user(self, user_id: int, new_name: str) -> User:
        user = await self.get_user(user_id)
        validate_username(new_name)
        if user.provider == RegisterMethod.OIDC:
            raise Invalid("cannot edit OIDC user", entity="user")
        try:
            async with self._write() as conn:
                cur = await conn.execute(
                    f"UPDATE users SET name = ?, updated_at = ? WHERE id = ? AND {_LIVE}",
                    (new_name, format_time(self._now()), user_id),
                )
                if cur.rowcount == 0:
                    raise NotFound(f"user {user_id} not found", entity="user")
        except IntegrityErrors as exc:
            raise integrity_error(exc, "user") from None
        return await self.get_user(user_id)

    async def update_user(self, user: User) -> User:
        """Write every field of ``user`` (except id and created_at); used for OIDC refreshes."""
        try:
            async with self._write() as conn:
                cur = await conn.execute(
                    "UPDATE users SET name = ?, display_name = ?, email = ?, provider_identifier = ?,"
                    f" provider = ?, profile_pic_url = ?, updated_at = ? WHERE id = ? AND {_LIVE}",
                    (user.name, user.display_name, user.email, user.provider_identifier, user.provider,
                     user.profile_pic_url, format_time(self._now()), user.id),
                )
                if cur.rowcount == 0:
                    raise NotFound(f"user {user.id} not found", entity="user")
        except IntegrityErrors as exc:
            raise integrity_error(exc, "user") from None
        return await self.get_user(user.id)

    async def delete_user(self, user_id: int) -> None:
        async with self._write() as conn:
            rows = await conn.execute_fetchall(f"SELECT 1 FROM users WHERE id = ? AND {_LIVE}", (user_id,))
            if not rows:
                raise NotFound(f"user {user_id} not found", entity="user")
            owned = await conn.execute_fetchall("SELECT count(*) FROM nodes WHERE user_id = ?", (user_id,))
            if owned[0][0]:
                raise Conflict("user not empty: node(s) found", entity="user")
            await conn.execute(
                "UPDATE nodes SET auth_key_id = NULL"
                " WHERE auth_key_id IN (SELECT id FROM pre_auth_keys WHERE user_id = ?)", (user_id,)
            )
            await conn.execute("DELETE FROM pre_auth_keys WHERE user_id = ?", (user_id,))
            await conn.execute("DELETE FROM users WHERE id = ?", (user_id,))
