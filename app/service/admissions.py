"""Pre-auth key registrations, admitted in batches with one commit (group commit).

A registration burst (ten thousand nodes with one reusable key) is bound by the state lock:
each new node used to be one transaction with its own WAL sync (synchronous=FULL) while the
lock was held, so the whole server waited on the disk once per node. Here every registration
that arrives while a batch is being written queues up; the next batch takes them all under
the lock, decides each exactly as before (key re-read and checked, same machine and owner ->
update, else a new node), writes every new node in ONE transaction (State.create_nodes), and
only then answers them: nothing is acknowledged before its commit. A batch that fails as a
whole is retried one node at a time, so one bad record fails only its own registration.

Two registrations of one machine in the same batch are taken one batch apart, so the second
finds the first's node as before; a single-use key admits one node per batch and is then
used, so the rest of that batch is refused as before.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from datetime import datetime
from typing import Any

from app.core.model import Node, PreAuthKey, RegisterMethod
from app.service.changes import Change
from app.store.errors import StoreError

log = logging.getLogger("headscale.register")

BATCH_MAX = 128   # registrations admitted under one lock hold (bounds how long others wait)


class RegisterError(Exception):
    """A refusal shown to the user as RegisterResponse.Error."""


def tags_refused(tags: list[str] | tuple[str, ...]) -> str:
    """Tailscale's (and headscale's) wording, which clients show as the login error."""
    return f"requested tags [{' '.join(tags)}] are invalid or not permitted"


def check_key(key: PreAuthKey, now: datetime) -> None:
    if key.revoked:
        raise RegisterError("authkey revoked")
    if key.is_expired(now):
        raise RegisterError("authkey expired")
    if key.used and not key.reusable:
        raise RegisterError("authkey already used")


@dataclasses.dataclass
class Admission:
    machine_key: str
    node_key: str
    old_key: str | None
    key_id: int
    hostinfo: dict[str, Any]
    node_expiry: Any                      # callable(tagged: bool) -> datetime | None
    done: asyncio.Future = dataclasses.field(default_factory=lambda: asyncio.get_running_loop().create_future())


class Admissions:
    """The queue of pre-auth key registrations and the task that admits them in batches."""

    def __init__(self, state: Any) -> None:
        self.state = state
        self.queue: list[Admission] = []
        self._drainer: asyncio.Task | None = None

    async def admit(self, adm: Admission) -> Node:
        self.queue.append(adm)
        if self._drainer is None or self._drainer.done():
            # Its own task: a registering client that goes away does not stop the others' batch.
            self._drainer = asyncio.create_task(self._drain())
        return await adm.done

    async def _drain(self) -> None:
        while self.queue:
            async with self.state.lock:
                batch, self.queue = self.queue[:BATCH_MAX], self.queue[BATCH_MAX:]
                try:
                    await self._admit_batch(batch)
                except BaseException as exc:   # a bug or a cancelled server: nobody waits forever
                    for adm in batch:
                        if not adm.done.done():
                            adm.done.set_exception(exc if isinstance(exc, Exception) else RegisterError("server stopping"))
                    if not isinstance(exc, Exception):
                        raise

    async def _admit_batch(self, batch: list[Admission]) -> None:
        st = self.state
        now = st.now()
        fresh: dict[int, PreAuthKey] = {}     # each key as read at the start of this batch
        keys: dict[int, PreAuthKey] = {}      # ... and as this batch leaves it (used)
        results: list[tuple[Admission, Node | BaseException]] = []
        new: list[tuple[Admission, Node]] = []
        machines: set[str] = set()
        later: list[Admission] = []
        for adm in batch:
            if adm.machine_key in machines:
                later.append(adm)
                continue
            try:
                if adm.key_id not in keys:
                    fresh[adm.key_id] = keys[adm.key_id] = await st.db.get_pre_auth_key(adm.key_id)
                key = keys[adm.key_id]
                # Checked again under the lock: a concurrent registration may have used it meanwhile.
                check_key(key, now)
                node = await self._decide(adm, key)
                if node is None:       # a new node: written with the rest of the batch
                    new.append((adm, self._new_node(adm, key)))
                    machines.add(adm.machine_key)
                else:
                    results.append((adm, node))
                keys[key.id] = dataclasses.replace(key, used=True)
            except Exception as exc:  # noqa: BLE001 - this registration's own refusal or failure
                results.append((adm, exc))
        if new:
            try:
                created = await st.create_nodes([n for _, n in new])
                results += [(adm, node) for (adm, _), node in zip(new, created, strict=True)]
            except Exception:  # noqa: BLE001 - one at a time, so a bad record fails only itself
                for adm, n in new:
                    try:
                        results.append((adm, await st.create_node(n)))
                    except Exception as exc:  # noqa: BLE001
                        results.append((adm, exc))
        used = {adm.key_id for adm, r in results if isinstance(r, Node)}
        failed: dict[int, Exception] = {}
        for key_id in used:
            key = fresh[key_id]
            if not key.reusable:
                try:
                    await st.db.use_pre_auth_key(key.id)
                except StoreError as exc:   # as before: that registration fails, its node stays
                    failed[key_id] = exc
            elif not key.used:
                try:
                    await st.db.use_pre_auth_key(key.id)
                except StoreError:
                    pass  # a reusable key only records that it was used once
        for adm, r in results:
            if adm.done.done():
                continue     # its client went away; the node stays, as a retry would find it
            if isinstance(r, Node) and adm.key_id in failed:
                r = failed[adm.key_id]
            if isinstance(r, BaseException):
                adm.done.set_exception(r)
            else:
                adm.done.set_result(r)
        self.queue[:0] = later

    async def _decide(self, adm: Admission, key: PreAuthKey) -> Node | None:
        """Same machine and owner: update the existing node (returned); else None (new)."""
        st = self.state
        owner = key.user_id
        existing = st.node_by_key(adm.old_key) if adm.old_key else None
        tags = tuple(sorted(set(key.tags)))
        if existing is None:
            # headscale keys a node by (machine key, owner); tagged nodes by machine key and tags.
            existing = next((n for n in st.nodes_of_machine(adm.machine_key)
                             if (n.tags == tags if tags else n.user_id == owner)), None)
        if existing is None or existing.machine_key != adm.machine_key:
            if adm.hostinfo.get("RequestTags"):
                # headscale 0.28: a pre-auth key's node gets the key's tags, never requested ones.
                raise RegisterError(tags_refused(adm.hostinfo["RequestTags"]))
            return None
        updated = dataclasses.replace(
            existing, node_key=adm.node_key, hostinfo=adm.hostinfo or existing.hostinfo, auth_key_id=key.id,
            expiry=adm.node_expiry(bool(tags)), tags=tags or existing.tags,
            register_method=RegisterMethod.AUTH_KEY, user_id=None if tags else owner, ephemeral=key.ephemeral,
        )
        change = Change(peers_changed={existing.id}, self_changed={existing.id})
        return await st.replace_node(updated, change, policy=True)

    @staticmethod
    def _new_node(adm: Admission, key: PreAuthKey) -> Node:
        tags = tuple(sorted(set(key.tags)))
        return Node(
            id=0, machine_key=adm.machine_key, node_key=adm.node_key,
            hostname=str(adm.hostinfo.get("Hostname") or "node"),
            user_id=None if tags else key.user_id, hostinfo=adm.hostinfo or None,
            register_method=RegisterMethod.AUTH_KEY, tags=tags, auth_key_id=key.id,
            expiry=adm.node_expiry(bool(tags)), ephemeral=key.ephemeral,
        )
