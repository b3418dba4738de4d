"""The coordinator: one in-memory view of the tailnet, kept in step with the database.

Every mutation is: validate -> write to the store -> replace the in-memory record -> emit a
Change. Map sessions read the in-memory view only; they never touch SQL. Everything runs on
one event loop, and mutations are serialised by one lock, so the view is always consistent
with what was committed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from app.core import names
from app.core.ipam import Allocator
from app.core.map.builder import MapSettings
from app.core.map.chunks import chunk_of
from app.core.model import ApiKey, Node, PreAuthKey, User
from app.core.routes import elect_primaries, routes_for_peer, served_routes
from app.core.tagnames import admin_tag_problem
from app.service.changes import Change
from app.service.errors import Conflict, Invalid, NotFound
from app.service.policyview import AllowAll, PolicyView, compile_view, still_current

log = logging.getLogger("headscale.state")



def utcnow() -> datetime:
    return datetime.now(UTC)


def _check_admin_tags(tags: list[str]) -> None:
    """Refuse, before anything changes, a tag no client or policy could use (core/tagnames.py)."""
    for t in tags:
        problem = admin_tag_problem(t)
        if problem:
            raise Invalid(problem)


class State:
    def __init__(self, db: Any, cfg: Any, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.cfg = cfg
        self.now = clock
        self.lock = asyncio.Lock()
        self.users: dict[int, User] = {}
        self.nodes: dict[int, Node] = {}
        self.by_node_key: dict[str, int] = {}
        self.by_machine: dict[str, set[int]] = {}          # machine key -> node ids (one per owner)
        self.by_name: dict[str, int] = {}                   # given name -> node id
        self.online: set[int] = set()
        self.ephemeral_keys: set[int] = set()      # ids of ephemeral pre-auth keys
        self.policy_source: str | None = None
        self.policy_updated: datetime | None = None
        self._policy: PolicyView = AllowAll()
        self._policy_stale = False     # nodes moved since the last compile (see ``policy``)
        self._checked: tuple[str, PolicyView] | None = None   # the last check_policy result
        self.primaries: dict[str, int] = {}
        self.unhealthy_routers: set[int] = set()   # failed HA probes (app.service.haprobe)
        self.served: dict[int, list[str]] = {}
        self.derp_map: dict[str, Any] = {"Regions": {}}
        self.settings = MapSettings()
        self.listeners: list[Callable[[Change], None]] = []
        self.removed_hooks: list[Callable[[Node], None]] = []   # e.g. drop the node's DERP connection
        self.v4 = Allocator(cfg.prefixes.v4, cfg.prefixes.allocation) if cfg.prefixes.v4 else None
        self.v6 = Allocator(cfg.prefixes.v6, cfg.prefixes.allocation) if cfg.prefixes.v6 else None
        self._labels = names.LabelHints()        # unique given names for joins without O(N) probing
        self.version = 0   # bumped on every committed change; caches key on it
        self.routers: set[int] = set()           # nodes that serve at least one route
        self.chunk_gen: dict[int, int] = {}      # peer chunk -> bumped when any of its records moves
        self.touch_gen = 0                       # bumped when any record moves
        # Nodes that came online, in order (app/service/mapper.py: what a cached run of peer
        # frames says offline); cleared, with online_epoch bumped, when it grows long.
        self.online_log: list[int] = []
        self.online_epoch = 0
        self._all_ids: frozenset[int] | None = None   # shared allow-all peer set (rebuilt lazily)
        self.owner_gen = 0                       # bumped when a node's owner (user, tags) may move

    @property
    def policy(self) -> PolicyView:
        """The policy compiled against the current users and nodes.

        Node changes only mark it stale and the next reader recompiles, so a burst of joins
        within one batching tick costs one compilation (at 10,000 nodes ~0.1-0.3 s each)."""
        if self._policy_stale:
            self._policy_stale = False
            self._recompile_policy()
        return self._policy

    @policy.setter
    def policy(self, view: PolicyView) -> None:
        self._policy, self._policy_stale = view, False

    @property
    def identity_policy(self) -> PolicyView:
        """The policy for questions decided by a node's own user and tags (tag ownership,
        route auto-approval): possibly compiled before the latest node changes, so asking it
        never forces a recompilation."""
        return self._policy

    # ---- loading ---------------------------------------------------------------------------

    async def load(self) -> None:
        for u in await self.db.list_users():
            self.users[u.id] = u
        for k in await self.db.list_pre_auth_keys():
            if k.ephemeral:
                self.ephemeral_keys.add(k.id)
        for n in await self.db.list_nodes():
            n = dataclasses.replace(n, ephemeral=n.auth_key_id in self.ephemeral_keys)
            self._put(n)
            for alloc, addr in ((self.v4, n.ipv4), (self.v6, n.ipv6)):
                if alloc:
                    alloc.mark_used([addr])
        self._recompute_routes()

    async def load_policy(self, source: str | None, updated: datetime | None = None) -> None:
        """Install a policy (None = allow-all). Raises PolicyError on a bad policy."""
        checked, self._checked = self._checked, None
        users, nodes = list(self.users.values()), list(self.nodes.values())
        if checked is not None and checked[0] == source and still_current(checked[1], users, nodes):
            view = checked[1]      # ``policy set`` checked this very text against these very records
        else:
            view = compile_view(source, users, nodes, self.cfg.server_url, previous=self._policy)
        self.policy_source = source
        self.policy_updated = updated
        self.policy = view
        self._emit(Change(policy=True))

    def check_policy(self, source: str) -> None:
        view = compile_view(source, list(self.users.values()), list(self.nodes.values()), self.cfg.server_url,
                            previous=self._policy)
        self._checked = (source, view)    # load_policy installs it if nothing moved in between

    # ---- in-memory bookkeeping -------------------------------------------------------------

    def _put(self, node: Node) -> None:
        old = self.nodes.get(node.id)
        if old is not None:
            self._unindex(old)
        self.nodes[node.id] = node
        self.by_node_key[node.node_key] = node.id
        self.by_machine.setdefault(node.machine_key, set()).add(node.id)
        self.by_name[node.given_name] = node.id
        self.served[node.id] = served_routes(node, self.identity_policy.auto_approved_routes(node))
        if self.served[node.id]:
            self.routers.add(node.id)
        else:
            self.routers.discard(node.id)
        if old is None:
            self._all_ids = None
        if old is None or (old.user_id, old.tags) != (node.user_id, node.tags):
            self.owner_gen += 1
        self._touch(node.id)

    def _touch(self, node_id: int) -> None:
        """The node's peer entry changed: cached chunks holding it are stale."""
        c = chunk_of(node_id)
        self.chunk_gen[c] = self.chunk_gen.get(c, 0) + 1
        self.touch_gen += 1

    def _drop(self, node_id: int) -> Node | None:
        node = self.nodes.pop(node_id, None)
        if node is not None:
            self._unindex(node)
            self.served.pop(node_id, None)
            self.routers.discard(node_id)
            self._all_ids = None
            self._touch(node_id)
            self.online.discard(node_id)
            for alloc, addr in ((self.v4, node.ipv4), (self.v6, node.ipv6)):
                if alloc:
                    alloc.release(addr)
            for hook in self.removed_hooks:
                hook(node)
        return node

    def _unindex(self, node: Node) -> None:
        if self.by_node_key.get(node.node_key) == node.id:
            del self.by_node_key[node.node_key]
        ids = self.by_machine.get(node.machine_key)
        if ids is not None:
            ids.discard(node.id)
            if not ids:
                del self.by_machine[node.machine_key]
        if self.by_name.get(node.given_name) == node.id:
            del self.by_name[node.given_name]
            self._labels.released(node.given_name)

    def nodes_of_machine(self, machine_key: str) -> list[Node]:
        return [self.nodes[i] for i in sorted(self.by_machine.get(machine_key, ()))]

    def _recompute_routes(self) -> set[int]:
        """Re-elect primary routers; returns the nodes whose offered routes changed."""
        # Only routers can hold a prefix: O(routers), not O(nodes), per registration or change.
        served = {nid: self.served[nid] for nid in self.routers if nid in self.served}
        new = elect_primaries(served, self.online, self.primaries, self.unhealthy_routers)
        changed = {nid for prefix in set(new) | set(self.primaries)
                   for nid in (new.get(prefix), self.primaries.get(prefix))
                   if nid is not None and new.get(prefix) != self.primaries.get(prefix)}
        self.primaries = new
        return changed

    def routes_of(self, node_id: int) -> list[str]:
        return routes_for_peer(node_id, self.served.get(node_id, []), self.primaries)

    def _emit(self, change: Change) -> None:
        self.version += 1
        for listener in self.listeners:
            listener(change)

    def _refresh_policy_nodes(self, *, deferred: bool = False) -> bool:
        """Recompile against the current users/nodes; True when a policy is active.

        ``deferred`` (node changes): only mark the view stale; ``policy`` recompiles on the
        next read. Users changes recompile at once: route auto-approval in ``_put`` reads the
        view without forcing it, which is sound while only nodes moved (approval is decided by
        the node's own user and tags, app.core.policy.routes)."""
        if self.policy_source is None:
            return False
        if deferred:
            self._policy_stale = True
        else:
            self._policy_stale = False
            self._recompile_policy()
        return True

    def _recompile_policy(self) -> None:
        try:
            self._policy = compile_view(
                self.policy_source, list(self.users.values()), list(self.nodes.values()), self.cfg.server_url,
                run_tests=False, previous=self._policy,
            )
        except Exception as exc:  # noqa: BLE001 - a policy that stops compiling keeps the previous view
            log.warning("policy no longer compiles against current nodes/users: %s", exc)

    # ---- lookups ---------------------------------------------------------------------------

    def node_by_key(self, node_key: str) -> Node | None:
        nid = self.by_node_key.get(node_key)
        return self.nodes.get(nid) if nid is not None else None

    def get_node(self, node_id: int) -> Node:
        try:
            return self.nodes[node_id]
        except KeyError:
            raise NotFound(f"node {node_id} not found") from None

    def get_user(self, user_id: int) -> User:
        try:
            return self.users[user_id]
        except KeyError:
            raise NotFound(f"user {user_id} not found") from None

    def user_by_name(self, name: str) -> User | None:
        for u in self.users.values():
            if u.name == name:
                return u
        return None

    def all_ids(self) -> frozenset[int]:
        """Every node id, as one set shared by all allow-all viewers until membership changes."""
        if self._all_ids is None:
            self._all_ids = frozenset(self.nodes)
        return self._all_ids

    def peer_view(self, node_id: int) -> tuple[frozenset[int], frozenset[int]]:
        """(shared base, own extra): the node sees (base | extra) - {node_id}.

        The base is one object per visibility class (allow-all: one for the whole tailnet), so
        ten thousand sessions hold references, not copies; the extra is usually empty."""
        base, extra = self.policy.peer_view(node_id)
        return (self.all_ids() if base is None else base), extra

    def visible_peers(self, node_id: int) -> set[int]:
        base, extra = self.peer_view(node_id)
        return {p for p in (base | extra) if p in self.nodes and p != node_id}

    # ---- users -----------------------------------------------------------------------------

    async def create_user(self, name: str, display_name: str = "", email: str = "", picture_url: str = "") -> User:
        if not name:
            raise Invalid("user name must not be empty")
        async with self.lock:
            if self.user_by_name(name) is not None:
                raise Conflict(f"user {name!r} already exists")
            user = await self.db.create_user(name, display_name=display_name, email=email,
                                             profile_pic_url=picture_url)
            self.users[user.id] = user
            policy = self._refresh_policy_nodes()
            self._emit(Change(policy=policy))
            return user

    async def rename_user(self, user_id: int, new_name: str) -> User:
        if not new_name:
            raise Invalid("new name must not be empty")
        async with self.lock:
            self.get_user(user_id)
            other = self.user_by_name(new_name)
            if other is not None and other.id != user_id:
                raise Conflict(f"user {new_name!r} already exists")
            user = await self.db.rename_user(user_id, new_name)
            self.users[user.id] = user
            policy = self._refresh_policy_nodes()
            owned = {n.id for n in self.nodes.values() if n.user_id == user_id}
            self._emit(Change(policy=policy, peers_changed=owned, self_changed=owned))
            return user

    async def delete_user(self, user_id: int) -> None:
        async with self.lock:
            self.get_user(user_id)
            if any(n.user_id == user_id for n in self.nodes.values()):
                raise Conflict("user has nodes; delete or move them first")
            await self.db.delete_user(user_id)
            self.users.pop(user_id, None)
            policy = self._refresh_policy_nodes()
            self._emit(Change(policy=policy))

    # ---- pre-auth keys and API keys --------------------------------------------------------

    async def create_preauth_key(
        self, user_id: int | None, *, reusable: bool, ephemeral: bool, expiration: datetime | None,
        tags: list[str],
    ) -> tuple[PreAuthKey, str]:
        if user_id is not None:
            self.get_user(user_id)
        _check_admin_tags(tags)
        if user_id is None and not tags:
            raise Invalid("a pre-auth key needs a user or at least one tag")
        async with self.lock:
            key, full = await self.db.create_pre_auth_key(
                user_id, reusable=reusable, ephemeral=ephemeral, expiration=expiration, tags=list(tags)
            )
            if key.ephemeral:
                self.ephemeral_keys.add(key.id)
            return key, full

    async def expire_preauth_key(self, key_id: int) -> None:
        async with self.lock:
            await self.db.expire_pre_auth_key(key_id)

    async def delete_preauth_key(self, key_id: int) -> None:
        async with self.lock:
            await self.db.delete_pre_auth_key(key_id)

    async def list_preauth_keys(self) -> list[PreAuthKey]:
        return await self.db.list_pre_auth_keys()

    async def create_api_key(self, expiration: datetime | None) -> tuple[ApiKey, str]:
        async with self.lock:
            return await self.db.create_api_key(expiration)

    # ---- nodes: admin mutations ------------------------------------------------------------

    async def rename_node(self, node_id: int, new_name: str) -> Node:
        if not names.valid_label(new_name):
            raise Invalid(f"{new_name!r} is not a valid DNS label (a-z, 0-9, '-', at most 63)")
        async with self.lock:
            node = self.get_node(node_id)
            if self.by_name.get(new_name, node_id) != node_id:
                raise Conflict(f"name {new_name!r} is already in use")
            node = dataclasses.replace(node, given_name=new_name)
            return await self.replace_node(node, Change(peers_changed={node_id}, self_changed={node_id}))

    async def expire_node(self, node_id: int, expiry: datetime | None = None, disable: bool = False) -> Node:
        async with self.lock:
            node = self.get_node(node_id)
            when = None if disable else (expiry or self.now())
            node = dataclasses.replace(node, expiry=when)
            return await self.replace_node(node, Change(peers_changed={node_id}, self_changed={node_id}))

    async def set_tags(self, node_id: int, tags: list[str]) -> Node:
        _check_admin_tags(tags)
        async with self.lock:
            node = self.get_node(node_id)
            new_tags = tuple(sorted(set(tags)))
            if not new_tags and node.user_id is None:
                raise Invalid("cannot remove all tags from a node that has no user")
            node = dataclasses.replace(node, tags=new_tags, expiry=None if new_tags else node.expiry)
            return await self.replace_node(node, Change(peers_changed={node_id}, self_changed={node_id}),
                                           policy=True)

    async def approve_routes(self, node_id: int, routes: list[str]) -> Node:
        from app.core.routes import canonical

        try:
            approved = tuple(sorted({canonical(r) for r in routes if r}))
        except ValueError as exc:
            raise Invalid(f"invalid route: {exc}") from None
        async with self.lock:
            node = dataclasses.replace(self.get_node(node_id), approved_routes=approved)
            node = dataclasses.replace(node, updated_at=self.now())
            await self.db.update_node(node)
            self._put(node)
            moved = self._recompute_routes() | {node_id}
            policy = self._refresh_policy_nodes(deferred=True)
            self._emit(Change(peers_changed=moved, self_changed=moved, policy=policy))
            return node

    async def delete_node(self, node_id: int) -> None:
        async with self.lock:
            self.get_node(node_id)
            await self.remove_node(node_id)

    async def backfill_ips(self) -> list[str]:
        """Give every node one address per configured prefix, and drop addresses of families
        (or outside prefixes) no longer configured. Returns what changed, one line each."""
        import ipaddress

        changes: list[str] = []
        async with self.lock:
            for node in sorted(self.nodes.values(), key=lambda n: n.id):
                new = {}
                for fam, alloc in (("ipv4", self.v4), ("ipv6", self.v6)):
                    addr = getattr(node, fam)
                    inside = alloc is not None and addr and ipaddress.ip_address(addr) in alloc.network
                    if alloc is not None and not inside:
                        if addr:
                            changes.append(f"node {node.id}: removed {fam} {addr} (outside {alloc.network})")
                        new[fam] = alloc.allocate()
                        changes.append(f"node {node.id}: assigned {fam} {new[fam]}")
                    elif alloc is None and addr:
                        new[fam] = None
                        changes.append(f"node {node.id}: removed {fam} {addr} (family not configured)")
                if new:
                    await self.replace_node(dataclasses.replace(node, **new),
                                            Change(peers_changed={node.id}, self_changed={node.id}), policy=True)
        return changes

    # ---- nodes: registration (called by app.service.registration) --------------------------

    def allocate_addresses(self) -> tuple[str | None, str | None]:
        v4 = self.v4.allocate() if self.v4 else None
        v6 = self.v6.allocate() if self.v6 else None
        return v4, v6

    def release_addresses(self, v4: str | None, v6: str | None) -> None:
        if self.v4:
            self.v4.release(v4)
        if self.v6:
            self.v6.release(v6)

    def unique_given_name(self, hostname: str, node_id: int | None = None) -> str:
        if node_id is None:   # a new node: the same answer, from remembered suffixes
            return self._labels.pick(names.sanitize_hostname(hostname), _NamesTakenBy(self.by_name, None))
        return names.unique_label(names.sanitize_hostname(hostname), _NamesTakenBy(self.by_name, node_id))

    async def create_node(self, node: Node) -> Node:
        """A new node with fresh addresses and a unique name (caller holds the lock)."""
        return (await self.create_nodes([node]))[0]

    async def create_nodes(self, nodes: list[Node]) -> list[Node]:
        """New nodes with fresh addresses and unique names, committed together (caller holds
        the lock): one transaction, one sync, one policy refresh and one Change for a
        registration burst. All or none: on failure every address is released and nothing is
        in memory."""
        given: set[str] = set()
        ready: list[Node] = []
        try:
            for node in nodes:
                v4, v6 = self.allocate_addresses()
                ready.append(dataclasses.replace(node, ipv4=v4, ipv6=v6))
                name = self._labels.pick(names.sanitize_hostname(node.hostname),
                                         _NamesTakenBy(self.by_name, None, given))
                given.add(name)
                ready[-1] = dataclasses.replace(ready[-1], given_name=name, created_at=self.now(),
                                                updated_at=self.now())
            stored = await self.db.insert_nodes(ready)
        except BaseException:
            for n in ready:
                self.release_addresses(n.ipv4, n.ipv6)
            self._labels.reset()
            raise
        out = [dataclasses.replace(n, ephemeral=n.auth_key_id in self.ephemeral_keys) for n in stored]
        for n in out:
            self._put(n)
        self._recompute_routes()
        policy = self._refresh_policy_nodes(deferred=True)
        self._emit(Change(peers_changed={n.id for n in out}, policy=policy))
        return out

    async def replace_node(self, node: Node, change: Change, policy: bool = False) -> Node:
        """Persist an updated node record (caller holds the lock) and emit ``change``."""
        node = dataclasses.replace(node, updated_at=self.now())
        await self.db.update_node(node)
        self._put(node)
        if policy:
            change.policy = self._refresh_policy_nodes(deferred=True) or change.policy
        self._emit(change)
        return node

    async def remove_node(self, node_id: int) -> None:
        """Delete (caller holds the lock); the node's own map stream is ended too."""
        await self.db.delete_node(node_id)
        self._drop(node_id)
        moved = self._recompute_routes()
        policy = self._refresh_policy_nodes(deferred=True)
        self._emit(Change(peers_removed={node_id}, peers_changed=moved, self_changed=moved, policy=policy,
                          full={node_id}))

    # ---- nodes: what clients report --------------------------------------------------------

    async def update_from_map_request(self, node: Node, req: dict[str, Any]) -> Node:
        """Apply Hostinfo/Endpoints/DiscoKey from a MapRequest; emit the smallest change."""
        async with self.lock:
            current = self.nodes.get(node.id)
            if current is None:
                raise NotFound("node not found")
            hostinfo = req.get("Hostinfo")
            new_hi = dict(current.hostinfo or {})
            if isinstance(hostinfo, dict):
                netinfo = hostinfo.get("NetInfo") or (current.hostinfo or {}).get("NetInfo")
                new_hi = dict(hostinfo)
                if netinfo:
                    new_hi["NetInfo"] = netinfo
            endpoints = req.get("Endpoints")
            new_eps = tuple(endpoints) if isinstance(endpoints, list) else current.endpoints
            disco = req.get("DiscoKey") or current.disco_key
            updated = dataclasses.replace(current, hostinfo=new_hi or None, endpoints=new_eps, disco_key=disco)

            change = Change()
            patch: dict[str, Any] = {}
            if new_eps != current.endpoints:
                patch["Endpoints"] = list(new_eps)
            if updated.home_derp != current.home_derp:
                patch["DERPRegion"] = updated.home_derp
            if disco != current.disco_key:
                patch["DiscoKey"] = disco
            old_hi = {k: v for k, v in (current.hostinfo or {}).items() if k != "NetInfo"}
            cmp_hi = {k: v for k, v in new_hi.items() if k != "NetInfo"}
            policy = False
            if old_hi != cmp_hi:
                hostname = str(new_hi.get("Hostname") or current.hostname)
                if hostname != current.hostname:
                    given = current.given_name
                    if names.is_auto_derived(current.given_name, current.hostname):
                        given = self.unique_given_name(hostname, current.id)
                    updated = dataclasses.replace(updated, hostname=hostname, given_name=given)
                change.peers_changed.add(node.id)
                change.self_changed.add(node.id)
                if tuple(new_hi.get("RoutableIPs") or ()) != tuple((current.hostinfo or {}).get("RoutableIPs") or ()):
                    policy = True
            elif patch:
                change.patches[node.id] = patch
            if updated == current and updated.hostinfo == current.hostinfo:
                return current
            updated = dataclasses.replace(updated, updated_at=self.now())
            await self.db.update_node(updated)
            self._put(updated)
            if policy:
                moved = self._recompute_routes()
                change.peers_changed |= moved
                change.self_changed |= moved
                change.policy = self._refresh_policy_nodes(deferred=True) or True
            self._emit(change)
            return updated

    # ---- presence --------------------------------------------------------------------------

    def set_online(self, node_id: int, online: bool) -> None:
        if node_id not in self.nodes:
            return
        was = node_id in self.online
        if online == was:
            return
        if online:
            # The record does not move: cached chunks stay (app/service/mapper.py follows a map
            # from a chunk that predates this with an OnlineChange).
            self.online.add(node_id)
            if len(self.online_log) >= 1 << 16:
                self.online_log.clear()
                self.online_epoch += 1
            self.online_log.append(node_id)
        else:
            self.online.discard(node_id)
            node = self.nodes[node_id]
            self.nodes[node_id] = dataclasses.replace(node, last_seen=self.now())
            self._touch(node_id)
        change = Change(online={node_id: online})
        # Only routers can move a primary route; everyone else skips the election.
        moved = self._recompute_routes() if self.served.get(node_id) or node_id in self.primaries.values() else set()
        change.peers_changed |= moved
        change.self_changed |= moved
        self._emit(change)

    async def persist_last_seen(self, node_id: int) -> None:
        node = self.nodes.get(node_id)
        if node is not None:
            try:
                await self.db.update_node(node)
            except Exception:  # noqa: BLE001 - the node may have been deleted meanwhile
                log.debug("could not persist last_seen of node %s", node_id)

    # ---- periodic work ---------------------------------------------------------------------

    async def collect_ephemeral(self, inactive_for: float) -> list[int]:
        """Delete ephemeral nodes offline for longer than ``inactive_for`` seconds."""
        cutoff = self.now() - timedelta(seconds=inactive_for)
        gone = []
        async with self.lock:
            for node in list(self.nodes.values()):
                if not node.ephemeral or node.id in self.online:
                    continue
                seen = node.last_seen or node.created_at
                if seen is not None and seen <= cutoff:
                    await self.remove_node(node.id)
                    gone.append(node.id)
        return gone

    def expired_since(self, since: datetime, until: datetime) -> set[int]:
        return {
            n.id for n in self.nodes.values()
            if n.expiry is not None and n.expiry.year > 1 and since < n.expiry <= until
        }

    def announce_expired(self, ids: set[int]) -> None:
        if ids:
            self._emit(Change(peers_changed=set(ids), self_changed=set(ids)))

    def set_derp_map(self, derp_map: dict[str, Any]) -> None:
        if derp_map != self.derp_map:
            self.derp_map = derp_map
            self._emit(Change(derp_map=True))

    def set_router_health(self, node_ids: set[int], healthy: bool) -> None:
        """HA probing verdicts: unhealthy routers lose primary to a healthy one (peers get the
        move as a delta); a router healthy again is only a candidate again."""
        before = set(self.unhealthy_routers)
        if healthy:
            self.unhealthy_routers -= node_ids
        else:
            self.unhealthy_routers |= node_ids
        if self.unhealthy_routers == before:
            return
        moved = self._recompute_routes()
        if moved:
            self._emit(Change(peers_changed=set(moved), self_changed=set(moved)))

    def set_dns_config(self, dns_config: dict[str, Any]) -> None:
        """New DNSConfig for every node (dns.extra_records_path changes): a DNS delta."""
        if dns_config != self.settings.dns_config:
            self.settings = dataclasses.replace(self.settings, dns_config=dns_config)
            self._emit(Change(dns=True))


class _NamesTakenBy:
    """``name in taken``: held by a node other than ``node_id`` (no copy of the name index), or
    in ``also`` (names given earlier in the same batch)."""

    def __init__(self, by_name: dict[str, int], node_id: int | None, also: set[str] | None = None) -> None:
        self.by_name = by_name
        self.node_id = node_id
        self.also = also or set()

    def __contains__(self, name: object) -> bool:
        holder = self.by_name.get(name)  # type: ignore[arg-type]
        return (holder is not None and holder != self.node_id) or name in self.also
