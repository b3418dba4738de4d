"""The high-availability lease on PostgreSQL: who may serve and write, with fencing.

Several ``headscale serve`` processes share one PostgreSQL database; exactly one is active.

- **Lock**: the active process holds a session advisory lock (``LOCK_KEY``) on a connection of
  its own (not from the pool). PostgreSQL releases it the moment that session ends: the
  process died, its connection broke, or an operator ran ``pg_terminate_backend``.
- **Lease row** (``pyheadscale_ha_lease``, one row): ``epoch`` grows by one at every takeover,
  with the holder's name. A process that gets the lock bumps the epoch in the same breath.
- **Fencing**: every write transaction (engine.PostgresEngine.write) first reads the lease row
  ``FOR SHARE`` and refuses to go on unless the epoch is still its own; the takeover's
  ``UPDATE`` of that row waits for such transactions, so a write either committed before the
  takeover or is refused after it. A process that lost its lock but has not noticed yet can
  therefore never write. Each allowed write also counts itself in ``pyheadscale_ha_epochs``
  (writes, last_write_at per epoch), which lets anyone check that no epoch wrote after the
  next one began.

These two tables are outside headscale's layout (headscale does not check PostgreSQL's), are
created on first use and ignored by the migrations and by ``database copy``.

| table                   | columns                                                     |
|-------------------------|-------------------------------------------------------------|
| pyheadscale_ha_lease    | id (always 1), epoch, holder, acquired_at                    |
| pyheadscale_ha_epochs   | epoch, holder, started_at, writes, last_write_at             |
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from .errors import StoreError

log = logging.getLogger("headscale.ha")

LOCK_KEY = 0x6873686131  # "hsha1": the active server's session advisory lock
_SETUP_KEY = 0x6873686130  # serialises the CREATE TABLEs of processes starting together

# A host that vanishes (power, partition) must not keep the lock: both ends of the lease
# connection probe the other after 2 s of silence and give up after ~5 s (PostgreSQL then ends
# the session and releases the lock; these server settings are per session, user-settable).
LEASE_KEEPALIVES = {
    "keepalives": 1, "keepalives_idle": 2, "keepalives_interval": 1, "keepalives_count": 3,
    "tcp_user_timeout": 5000,
    "options": "-c tcp_keepalives_idle=2 -c tcp_keepalives_interval=1 -c tcp_keepalives_count=3"
               " -c tcp_user_timeout=5000",
}

_SETUP = (
    ("CREATE TABLE IF NOT EXISTS pyheadscale_ha_lease (id integer PRIMARY KEY CHECK (id = 1),"
    " epoch bigint NOT NULL, holder text NOT NULL, acquired_at timestamptz NOT NULL)"),
    ("CREATE TABLE IF NOT EXISTS pyheadscale_ha_epochs (epoch bigint PRIMARY KEY, holder text NOT NULL,"
    " started_at timestamptz NOT NULL, writes bigint NOT NULL DEFAULT 0, last_write_at timestamptz)"),
)


class LeaseLost(StoreError):
    """This process no longer holds the HA lease: it must not write or serve."""

    kind = "fenced"


class Lease:
    """One process's side of the lease. ``try_acquire`` until it returns True, then install
    ``check`` as the engine's fence and call ``heartbeat`` every second; ``on_lost`` runs once
    when the lease is found lost (by the heartbeat or by a refused write)."""

    def __init__(self, conninfo: str, holder: str, *, on_lost: Callable[[str], None] | None = None,
                 timeout: float = 3.0) -> None:
        self.conninfo = conninfo
        self.holder = holder
        self.timeout = timeout
        self.on_lost = on_lost
        self.epoch: int | None = None
        self.lost_reason = ""
        self._conn: Any = None

    @property
    def held(self) -> bool:
        return self.epoch is not None and not self.lost_reason

    async def _connect(self) -> Any:
        import psycopg

        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(
                self.conninfo, autocommit=True, connect_timeout=max(1, int(self.timeout)),
                application_name="headscale-ha-lease", **LEASE_KEEPALIVES)
            async with self._conn.transaction():
                await self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SETUP_KEY,))
                for stmt in _SETUP:
                    await self._conn.execute(stmt)
        return self._conn

    async def try_acquire(self) -> bool:
        """One attempt: True when this process now holds the lock and a new epoch. Connection
        problems count as "not now" (logged) so a standby keeps trying."""
        if self.lost_reason:
            return False
        try:
            return await asyncio.wait_for(self._try_acquire(), self.timeout * 2)
        except (OSError, TimeoutError, StoreError) as exc:
            log.warning("HA: cannot reach PostgreSQL for the lease (%s); retrying", exc)
        except Exception as exc:  # noqa: BLE001 - psycopg errors: one line, keep trying
            log.warning("HA: lease attempt failed (%s: %s); retrying", type(exc).__name__, exc)
        await self._drop()
        return False

    async def _try_acquire(self) -> bool:
        conn = await self._connect()
        row = await (await conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,))).fetchone()
        if not row or not row[0]:
            return False
        async with conn.transaction():
            cur = await conn.execute(
                "INSERT INTO pyheadscale_ha_lease (id, epoch, holder, acquired_at)"
                " VALUES (1, 1, %s, clock_timestamp())"
                " ON CONFLICT (id) DO UPDATE SET epoch = pyheadscale_ha_lease.epoch + 1,"
                " holder = excluded.holder, acquired_at = excluded.acquired_at RETURNING epoch",
                (self.holder,))
            (epoch,) = await cur.fetchone()
            await conn.execute(
                "INSERT INTO pyheadscale_ha_epochs (epoch, holder, started_at) VALUES (%s, %s, clock_timestamp())",
                (epoch, self.holder))
        self.epoch = int(epoch)
        log.info("HA: this server is now active (lease epoch %d, holder %s)", self.epoch, self.holder)
        return True

    async def current(self) -> tuple[int, str] | None:
        """(epoch, holder) as the database says, or None (no lease yet / unreachable)."""
        try:
            conn = await asyncio.wait_for(self._connect(), self.timeout)
            cur = await asyncio.wait_for(
                conn.execute("SELECT epoch, holder FROM pyheadscale_ha_lease WHERE id = 1"), self.timeout)
            row = await cur.fetchone()
        except Exception:  # noqa: BLE001 - unknown is a fine answer for a status line
            await self._drop()
            return None
        return (int(row[0]), str(row[1])) if row else None

    async def heartbeat(self) -> bool:
        """While active: the lock's session still answers and the epoch is still ours."""
        if not self.held:
            return False
        try:
            cur = await asyncio.wait_for(
                self._conn.execute("SELECT epoch FROM pyheadscale_ha_lease WHERE id = 1"), self.timeout)
            row = await asyncio.wait_for(cur.fetchone(), self.timeout)
        except Exception as exc:  # noqa: BLE001 - any failure: the lock may be gone
            self.lose(f"the lease connection failed ({type(exc).__name__}: {exc})".strip())
            return False
        if not row or int(row[0]) != self.epoch:
            self.lose(f"another server took the lease (epoch {row[0] if row else '?'})")
            return False
        return True

    async def check(self, conn: Any) -> None:
        """The fence: first statement of every write transaction."""
        if not self.held:
            raise LeaseLost(f"not the active server: {self.lost_reason or 'no lease'}", entity="database")
        rows = await conn.execute_fetchall("SELECT epoch FROM pyheadscale_ha_lease WHERE id = 1 FOR SHARE")
        if not rows or int(rows[0][0]) != self.epoch:
            self.lose(f"write refused: the lease moved to epoch {rows[0][0] if rows else '?'}")
            raise LeaseLost("not the active server any more: the HA lease moved", entity="database")
        await conn.execute(
            "UPDATE pyheadscale_ha_epochs SET writes = writes + 1, last_write_at = clock_timestamp()"
            " WHERE epoch = ?", (self.epoch,))

    def lose(self, reason: str) -> None:
        if self.lost_reason:
            return
        self.lost_reason = reason or "lost"
        log.error("HA: lease lost (epoch %s): %s", self.epoch, self.lost_reason)
        if self.on_lost is not None:
            self.on_lost(self.lost_reason)

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await conn.close()
            except Exception:
                log.debug("HA: closing the lease connection failed", exc_info=True)

    async def close(self) -> None:
        await self._drop()
