"""A small tailnet for unit tests: two users with laptops, a server, a subnet router, an exit."""

from __future__ import annotations

from app.core.model import Node, User

ALICE = User(id=1, name="alice", email="alice@example.com")
BOB = User(id=2, name="bob", email="bob@example.com")
CAROL = User(id=3, name="carol", email="carol@other.org")
USERS = [ALICE, BOB, CAROL]


def node(nid: int, *, user: User | None = None, tags: tuple[str, ...] = (), routes: tuple[str, ...] = (),
         approved: tuple[str, ...] | None = None) -> Node:
    return Node(id=nid, machine_key=f"mkey:{nid:064x}", node_key=f"nodekey:{nid:064x}",
                hostname=f"n{nid}", given_name=f"n{nid}", user_id=None if tags else (user.id if user else None),
                ipv4=f"100.64.0.{nid}", ipv6=f"fd7a:115c:a1e0::{nid:x}", tags=tags,
                hostinfo={"RoutableIPs": list(routes)},
                approved_routes=tuple(routes if approved is None else approved))


ALICE_LAPTOP = node(1, user=ALICE)
ALICE_PHONE = node(2, user=ALICE)
BOB_LAPTOP = node(3, user=BOB)
SERVER = node(10, tags=("tag:server",))
ROUTER = node(11, tags=("tag:router",), routes=("10.33.0.0/16",))
EXIT = node(12, tags=("tag:exit",), routes=("0.0.0.0/0", "::/0"))
CAROL_LAPTOP = node(4, user=CAROL)
NODES = [ALICE_LAPTOP, ALICE_PHONE, BOB_LAPTOP, CAROL_LAPTOP, SERVER, ROUTER, EXIT]

TAG_OWNERS = {"tag:server": ["alice@example.com"], "tag:router": ["group:admins"],
              "tag:exit": ["group:admins"], "tag:ci": ["tag:server"]}
GROUPS = {"group:admins": ["alice@example.com"], "group:dev": ["alice@example.com", "bob@example.com"]}
