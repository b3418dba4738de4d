"""Indexes over the users and nodes a policy is compiled against (built once per compile)."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from functools import cached_property, lru_cache

from ..model import Node, User
from .ipset import AddrSet, addr_to_int, prefix_interval
from .model import Network

__all__ = ["Tailnet", "is_exit_route"]

_EXIT_ROUTES = (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))


def is_exit_route(net: Network) -> bool:
    return net in _EXIT_ROUTES


@lru_cache(maxsize=1 << 16)
def parse_addr(text: str) -> tuple[int, str] | None:
    """A node address as (number-line value, canonical text); cached across compilations."""
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    return addr_to_int(addr), str(addr)


@lru_cache(maxsize=1 << 14)
def _network(text: str) -> Network | None:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


def _networks(texts: Sequence[str]) -> list[Network]:
    # a malformed route never matches anything
    return [net for net in map(_network, texts) if net is not None]


class Tailnet:
    """Users and nodes, with the lookups alias resolution and matching need."""

    def __init__(self, users: Sequence[User], nodes: Sequence[Node]) -> None:
        self.users = tuple(users)
        self.nodes: dict[int, Node] = {n.id: n for n in nodes}
        self.order: tuple[int, ...] = tuple(self.nodes)
        self.addrs: dict[int, tuple[int, ...]] = {}
        self.addr_owner: dict[int, int] = {}
        self.addr_text: dict[int, str] = {}        # canonical spelling of node addresses
        user_nodes: dict[int, set[int]] = {}
        tag_nodes: dict[str, set[int]] = {}
        members: set[int] = set()
        tagged: set[int] = set()
        self.subnet_routes: dict[int, tuple[Network, ...]] = {}
        self.exit_routes: dict[int, tuple[Network, ...]] = {}
        for n in self.nodes.values():
            ips = []
            for text in (n.ipv4, n.ipv6):
                if not text:
                    continue
                parsed = parse_addr(text)
                if parsed is None:
                    continue
                value, canonical = parsed
                ips.append(value)
                self.addr_owner.setdefault(value, n.id)
                self.addr_text[value] = canonical
            self.addrs[n.id] = tuple(ips)
            if n.tags:
                tagged.add(n.id)
                for t in n.tags:
                    tag_nodes.setdefault(t, set()).add(n.id)
            elif n.user_id is not None:
                members.add(n.id)
                user_nodes.setdefault(n.user_id, set()).add(n.id)
            else:
                members.add(n.id)
            if not n.approved_routes:
                continue
            announced = _networks(n.routable_ips)
            approved = set(_networks(n.approved_routes))
            subnets = tuple(r for r in announced if r in approved and not is_exit_route(r))
            exits = tuple(r for r in announced if r in approved and is_exit_route(r))
            if subnets:
                self.subnet_routes[n.id] = subnets
            if exits:
                self.exit_routes[n.id] = exits
        self._user_nodes = {u: frozenset(s) for u, s in user_nodes.items()}
        self._tag_nodes = {t: frozenset(s) for t, s in tag_nodes.items()}
        self.member_nodes = frozenset(members)
        self.tagged_nodes = frozenset(tagged)
        self.all_nodes = frozenset(self.nodes)
        self.exit_nodes = frozenset(self.exit_routes)
        self._user_cache: dict[str, int | None] = {}

    @classmethod
    def reuse(cls, previous: Tailnet, users: Sequence[User], nodes: Sequence[Node]) -> Tailnet | None:
        """``previous`` itself when it was built from these very user and node objects (a
        policy change: nothing about the tailnet moved), else None. Records are immutable,
        so identity means equality, and every index here is a function of them."""
        if len(users) != len(previous.users) or len(nodes) != len(previous.nodes):
            return None
        if any(a is not b for a, b in zip(users, previous.users)):
            return None
        have = previous.nodes
        if any(nid != n.id or have[nid] is not n for n, nid in zip(nodes, previous.order)):
            return None
        return previous

    # --- users ---------------------------------------------------------
    def user_matches(self, token: str) -> list[User]:
        """headscale ``resolveUser``: provider identifier first, then email or name.

        ``user:*@<domain>`` (Tailscale's domain wildcard) matches every user whose email is
        in that domain."""
        if token.startswith("user:*@"):
            domain = token[len("user:*@"):].lower()
            return [u for u in self.users if u.email.rpartition("@")[2].lower() == domain and "@" in u.email]
        name = token.removesuffix("@")
        for u in self.users:
            if u.provider_identifier and u.provider_identifier == name:
                return [u]
        return [u for u in self.users if u.email == name or u.name == name]

    def user_ids(self, token: str) -> list[int]:
        """Users a token names: one for a plain reference (none if ambiguous), all domain
        members for ``user:*@<domain>``."""
        if token.startswith("user:*@"):
            return [u.id for u in self.user_matches(token)]
        uid = self.user_id(token)
        return [] if uid is None else [uid]

    def user_id(self, token: str) -> int | None:
        if token not in self._user_cache:
            found = self.user_matches(token)
            self._user_cache[token] = found[0].id if len(found) == 1 else None
        return self._user_cache[token]

    def user(self, uid: int) -> User | None:
        return self._users_by_id.get(uid)

    @cached_property
    def _users_by_id(self) -> dict[int, User]:
        return {u.id: u for u in self.users}

    # --- nodes ---------------------------------------------------------
    def user_nodes(self, uid: int) -> frozenset[int]:
        return self._user_nodes.get(uid, frozenset())

    def tag_nodes(self, tag: str) -> frozenset[int]:
        return self._tag_nodes.get(tag, frozenset())

    def owner_of(self, node_id: int) -> int | None:
        """The owning user of an untagged node (tagged nodes have none)."""
        n = self.nodes[node_id]
        return None if n.tags else n.user_id

    @cached_property
    def sorted_addrs(self) -> list[int]:
        return sorted(self.addr_owner)

    @cached_property
    def router_intervals(self) -> list[tuple[int, int, int]]:
        """(lo, hi, node id) of every approved subnet route."""
        return [(*prefix_interval(r), nid) for nid, routes in self.subnet_routes.items() for r in routes]

    @cached_property
    def route_space(self) -> AddrSet:
        """Everything any approved subnet route covers (a quick "no router involved" test)."""
        return AddrSet((lo, hi) for lo, hi, _ in self.router_intervals)

    def user_nodes_ordered(self, uid: int) -> tuple[int, ...]:
        """A user's untagged nodes in node order."""
        cache = self.__dict__.setdefault("_ordered_user_nodes", {})
        if uid not in cache:
            members = self.user_nodes(uid)
            cache[uid] = tuple(n for n in self.order if n in members)
        return cache[uid]

    def node_ip_strings(self, node_id: int) -> list[str]:
        return [self.addr_text[a] for a in self.addrs[node_id]]

    @cached_property
    def approved_subnet_strings(self) -> list[str]:
        """Every approved subnet route once, in node order (added to ``*`` sources)."""
        seen: dict[str, None] = {}
        for nid in self.order:
            for r in self.subnet_routes.get(nid, ()):
                seen.setdefault(f"{r.network_address}/{r.prefixlen}", None)
        return list(seen)
