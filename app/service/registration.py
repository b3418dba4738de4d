"""POST /machine/register: the decision table of PROTOCOL.md 3.1.4.

Every logical outcome is an HTTP 200 RegisterResponse; failures are ``Error`` strings a
person can act on. The machine key comes from the Noise handshake and is checked on every
request: a node key presented over another machine's session is refused.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from datetime import datetime
from typing import Any

from app.core import keys
from app.core.authid import PREFIX, is_auth_id, new_auth_id
from app.core.hostinfo import valid_prefix
from app.core.map.builder import user_profile
from app.core.model import Node, RegisterMethod, User
from app.core.tailcfg import go_time
from app.service.admissions import Admission, Admissions, RegisterError, check_key, tags_refused
from app.service.changes import Change
from app.service.state import State
from app.store.errors import StoreError

log = logging.getLogger("headscale.register")

PENDING_TTL = 15 * 60


@dataclasses.dataclass
class Pending:
    auth_id: str
    machine_key: str
    node_key: str
    hostinfo: dict[str, Any]
    expiry: datetime | None
    created: float
    done: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    node_id: int | None = None
    rejected: bool = False
    error: str = ""   # why it was refused (shown to the waiting client)


class Registrar:
    def __init__(self, state: State) -> None:
        self.state = state
        self.pending: dict[str, Pending] = {}
        self.admissions = Admissions(state)

    # ---- public entry ----------------------------------------------------------------------

    async def register(self, machine_key: str, req: dict[str, Any]) -> dict[str, Any]:
        try:
            return await self._register(machine_key, req)
        except RegisterError as exc:
            log.info("register refused for %s: %s", keys.short(machine_key), exc)
            return {"Error": str(exc)}

    def _response(self, node: Node, *, authorized: bool = True) -> dict[str, Any]:
        user = self.state.users.get(node.user_id) if node.user_id is not None else None
        prof = user_profile(user, node)
        created = user.created_at if user and not node.is_tagged else None
        return {
            "User": {"ID": prof["ID"], "DisplayName": prof["DisplayName"],
                     "ProfilePicURL": prof.get("ProfilePicURL", ""), "Created": go_time(created)},
            "Login": {"ID": prof["ID"], "Provider": (user.provider if user else "") or "",
                      "LoginName": prof["LoginName"], "DisplayName": prof["DisplayName"],
                      "ProfilePicURL": prof.get("ProfilePicURL", "")},
            "MachineAuthorized": authorized,
            "NodeKeyExpired": node.is_expired(self.state.now()),
            "AuthURL": "",
        }

    @staticmethod
    def _expired_response() -> dict[str, Any]:
        return {"NodeKeyExpired": True, "MachineAuthorized": False, "AuthURL": ""}

    async def _register(self, machine_key: str, req: dict[str, Any]) -> dict[str, Any]:
        """``req`` is what app.core.tailcfg.parse_register_request returned (types checked)."""
        st = self.state
        node_key: str = req["NodeKey"]
        old_key: str | None = req.get("OldNodeKey")
        expiry: datetime | None = req.get("Expiry")
        auth_key = str((req.get("Auth") or {}).get("AuthKey") or "")
        hostinfo: dict[str, Any] = req.get("Hostinfo") or {}
        now = st.now()
        node = st.node_by_key(node_key)
        if node is not None and node.machine_key != machine_key:
            log.warning("register: node key presented by another machine (%s)", keys.short(machine_key))
            raise RegisterError("node exists with a different machine key")

        # 1. Logout / expire request.
        if expiry is not None and expiry <= now and node is not None:
            async with st.lock:
                if node.is_expired(now):
                    return self._expired_response()
                if node.ephemeral:
                    await st.remove_node(node.id)
                    return self._expired_response()
                node = await st.replace_node(
                    dataclasses.replace(node, expiry=now),
                    Change(peers_changed={node.id}, self_changed={node.id}),
                )
            return self._response(node)

        # 2. Known node, no auth: the daemon-restart path.
        if node is not None and not auth_key:
            if node.is_expired(now):
                return self._expired_response()
            if expiry is not None and expiry > now and (node.expiry is None or expiry > node.expiry):
                raise RegisterError("extending key is not allowed")
            return self._response(node)

        # 3. Follow-up of an interactive registration.
        followup = str(req.get("Followup") or "")
        if followup:
            return await self._wait_followup(machine_key, followup, node_key, hostinfo, expiry)

        # 4. Pre-auth key.
        if auth_key:
            return await self._with_auth_key(machine_key, node_key, old_key, auth_key, hostinfo, expiry, node)

        # Key rotation without auth key by a known machine: re-key the node (as Tailscale's
        # test server does); clients send OldNodeKey after NodeKeyExpired.
        if old_key is not None:
            old = st.node_by_key(old_key)
            if old is not None and old.machine_key == machine_key and not old.is_expired(now):
                async with st.lock:
                    node = await st.replace_node(
                        dataclasses.replace(old, node_key=node_key),
                        Change(patches={old.id: {"Key": node_key}}, self_changed={old.id}),
                    )
                return self._response(node)

        # 5. Interactive.
        return self._start_interactive(machine_key, node_key, hostinfo, expiry)

    # ---- pre-auth keys ---------------------------------------------------------------------

    async def _with_auth_key(
        self, machine_key: str, node_key: str, old_key: str | None, auth_key: str,
        hostinfo: dict[str, Any], expiry: datetime | None, node: Node | None,
    ) -> dict[str, Any]:
        st = self.state
        now = st.now()
        try:
            key = await st.db.validate_pre_auth_key(auth_key)
        except StoreError:
            raise RegisterError("invalid pre auth key") from None
        # A node re-running `tailscale up --authkey` with the same node key skips validation.
        if node is not None and node.auth_key_id == key.id and not node.is_expired(now):
            return self._response(node)
        check_key(key, now)
        # Decided and committed with the other registrations of its batch (admissions.py).
        node = await self.admissions.admit(Admission(
            machine_key, node_key, old_key, key.id, hostinfo,
            lambda tagged: self._node_expiry(expiry, tagged=tagged)))
        log.info("node %s registered with pre-auth key %s", node.id, key.masked)
        return self._response(node)

    def _node_expiry(self, requested: datetime | None, *, tagged: bool) -> datetime | None:
        if tagged:
            return None
        if requested is not None and requested > self.state.now():
            return requested
        default = float(self.state.cfg.node.expiry or 0)
        if default > 0:
            from datetime import timedelta

            return self.state.now() + timedelta(seconds=default)
        return None

    # ---- interactive (AuthURL) -------------------------------------------------------------

    def _start_interactive(self, machine_key: str, node_key: str, hostinfo: dict[str, Any],
                           expiry: datetime | None) -> dict[str, Any]:
        self._gc_pending()
        limit = int(self.state.cfg.tuning.register_cache_max_entries)
        while self.pending and len(self.pending) >= max(limit, 1):  # oldest first (dict order)
            oldest = next(iter(self.pending))
            log.info("pending registration %s evicted (tuning.register_cache_max_entries %d)",
                     oldest, limit)
            self.pending.pop(oldest).done.set()
        auth_id = new_auth_id()
        self.pending[auth_id] = Pending(auth_id, machine_key, node_key, hostinfo, expiry,
                                        asyncio.get_running_loop().time())
        url = self.state.cfg.server_url.rstrip("/") + "/register/" + auth_id
        return {"AuthURL": url}

    def _gc_pending(self) -> None:
        now = asyncio.get_running_loop().time()
        ttl = float(self.state.cfg.tuning.register_cache_expiration or PENDING_TTL)
        for k, p in list(self.pending.items()):
            if now - p.created > ttl:
                del self.pending[k]

    async def _wait_followup(self, machine_key: str, followup: str, node_key: str,
                             hostinfo: dict[str, Any], expiry: datetime | None) -> dict[str, Any]:
        auth_id = followup.rstrip("/").rsplit("/", 1)[-1]
        pending = self.pending.get(auth_id)
        if pending is None or pending.machine_key != machine_key:
            return self._start_interactive(machine_key, node_key, hostinfo, expiry)
        await pending.done.wait()
        self.pending.pop(auth_id, None)
        if pending.rejected:
            raise RegisterError(pending.error or "the login was rejected by an administrator")
        node = self.state.nodes.get(pending.node_id or -1)
        if node is None:
            raise RegisterError("registration was not completed")
        return self._response(node)

    def add_debug_pending(self, auth_id: str, name: str, routes: list[str]) -> Pending:
        """`headscale debug create-node`: a pending registration of a made-up machine."""
        if not is_auth_id(auth_id):
            from app.service.errors import Invalid

            raise Invalid(f"invalid registration id {auth_id!r}: expected {PREFIX}<24 hex>")
        bad = [r for r in routes if not valid_prefix(r)]
        if bad:
            from app.service.errors import Invalid

            raise Invalid(f"invalid route {bad[0]!r}: expected a prefix such as 10.0.0.0/24")
        pending = Pending(auth_id, keys.format_key(keys.new_private(), keys.MACHINE_PUBLIC),
                          keys.format_key(keys.new_private(), keys.NODE_PUBLIC),
                          {"Hostname": name, "RoutableIPs": list(routes)}, None,
                          asyncio.get_running_loop().time())
        self.pending[auth_id] = pending
        return pending

    async def complete(self, auth_id: str, user: User, *, method: str = RegisterMethod.CLI,
                       expiry: datetime | None = None) -> Node:
        """Admit a pending machine for ``user``: `headscale auth register --auth-id ID --user U`
        (method CLI) or a confirmed OIDC sign-in (method OIDC; ``expiry`` from the ID token when
        oidc.use_expiry_from_token). The same machine signing in again as the same user keeps
        its node (id and addresses)."""
        from app.service.errors import NotFound

        st = self.state
        self._gc_pending()  # an expired registration (tuning.register_cache_expiration) is gone
        pending = self.pending.get(auth_id)
        if pending is None or pending.done.is_set():
            raise NotFound(f"no pending registration with id {auth_id!r} (expired or unknown)")
        async with st.lock:
            existing = next((n for n in st.nodes_of_machine(pending.machine_key) if n.user_id == user.id), None)
            wanted = tuple(sorted(set(pending.hostinfo.get("RequestTags") or ())))
            if existing is None and wanted:   # a tagged node of this machine logging in again
                existing = next((n for n in st.nodes_of_machine(pending.machine_key) if n.tags == wanted), None)
            hostname = str(pending.hostinfo.get("Hostname") or "node")
            tags = self._requested_tags(pending, existing, user)
            expiry = expiry if expiry is not None else self._node_expiry(pending.expiry, tagged=bool(tags))
            if existing is not None:
                node = await st.replace_node(
                    dataclasses.replace(existing, node_key=pending.node_key, expiry=expiry,
                                        hostinfo=pending.hostinfo or existing.hostinfo,
                                        register_method=method,
                                        **({"tags": tags, "user_id": None} if tags else {})),
                    Change(peers_changed={existing.id}, self_changed={existing.id}), policy=bool(tags),
                )
            else:
                node = await st.create_node(Node(
                    id=0, machine_key=pending.machine_key, node_key=pending.node_key, hostname=hostname,
                    user_id=None if tags else user.id, hostinfo=pending.hostinfo or None,
                    register_method=method, expiry=expiry, tags=tags,
                ))
            if tags:
                log.info("node %s registered with requested tags %s (tagOwners allow %s)",
                         node.id, ",".join(tags), user.name)
        pending.node_id = node.id
        pending.done.set()
        return node

    def _requested_tags(self, pending: Pending, existing: Node | None, user: User) -> tuple[str, ...]:
        """``tailscale up --advertise-tags`` on an interactive login (Hostinfo.RequestTags), as
        headscale 0.28: every tag must be one the policy's tagOwners let this user own, else
        the login is refused, naming the tags. None requested: the node keeps what it has."""
        from app.service.errors import Invalid

        requested = sorted(set(pending.hostinfo.get("RequestTags") or ()))
        if not requested:
            return ()
        # Judged as a node of the user who logs in: the user (or a group of theirs) must own
        # every tag, whatever tags a node of this machine had before.
        probe = Node(id=0, machine_key=pending.machine_key, node_key=pending.node_key,
                     hostname=str(pending.hostinfo.get("Hostname") or "node"), user_id=user.id)
        # Tag ownership is decided by the user and groups alone: identity_policy never waits
        # on a recompile for node changes.
        rejected = [t for t in requested if not self.state.identity_policy.node_can_have_tag(probe, t)]
        if rejected:
            reason = tags_refused(rejected)
            pending.rejected, pending.error = True, reason
            pending.done.set()
            log.info("login refused for %s: %s", keys.short(pending.machine_key), reason)
            raise Invalid(f"{reason}: add them to tagOwners for user {user.name!r} (or a group of "
                          "theirs) in the policy, or log in without --advertise-tags")
        return tuple(requested)

    def reject(self, auth_id: str) -> Pending:
        """`headscale auth reject --auth-id ID` for a pending login: the waiting client is told
        it was refused, and the id is forgotten."""
        from app.service.errors import NotFound

        pending = self.pending.get(auth_id)
        if pending is None or pending.done.is_set():
            raise NotFound(f"no pending registration with id {auth_id!r} (expired or unknown)")
        pending.rejected = True
        pending.done.set()
        return pending

