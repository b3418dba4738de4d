"""policies table: the policy document when headscale's ``policy.mode`` is ``database``.

Every ``set_policy`` adds a row (as headscale does); the current policy is the newest row not
soft-deleted.
"""

from __future__ import annotations

from datetime import datetime

from .base import QueryBase
from .codec import format_time, parse_time


class PolicyQueries(QueryBase):
    async def get_policy(self) -> tuple[str, datetime | None] | None:
        """(document, updated_at) of the current policy, or None when none was ever set."""
        row = await self._fetchone(
            "SELECT data, updated_at FROM policies WHERE deleted_at IS NULL ORDER BY id DESC LIMIT 1"
        )
        if row is None:
            return None
        return row[0] or "", parse_time(row[1])

    async def set_policy(self, data: str) -> tuple[str, datetime]:
        now = self._now()
        stamp = format_time(now)
        async with self._write() as conn:
            await conn.execute(
                "INSERT INTO policies (data, created_at, updated_at) VALUES (?, ?, ?)", (data, stamp, stamp)
            )
        return data, now
