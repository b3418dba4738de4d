"""``headscale auth`` (register / approve / reject pending interactive logins) and
``headscale debug create-node``."""

from __future__ import annotations

import argparse
from typing import Any

from app.cli.commands.common import CommaList, add_parser, group


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    auth = group(sub, "auth", common, "Manage node authentication and approval")

    p = add_parser(auth, "register", common, "Register a node to your network")
    p.add_argument("--auth-id", required=True, help="Auth ID (from the node's login URL)")
    p.add_argument("-u", "--user", required=True, help="User")
    p.set_defaults(func=auth_register)

    p = add_parser(auth, "approve", common, "Approve a pending authentication request")
    p.add_argument("--auth-id", required=True, help="Auth ID")
    p.set_defaults(func=auth_approve)

    p = add_parser(auth, "reject", common, "Reject a pending authentication request")
    p.add_argument("--auth-id", required=True, help="Auth ID")
    p.set_defaults(func=auth_reject)

    debug = group(sub, "debug", common, "debug and testing commands")
    p = add_parser(debug, "create-node", common, "Create a node that can be registered with `auth register <>` command")
    p.add_argument("--name", required=True, help="Name")
    p.add_argument("-u", "--user", required=True, help="User")
    p.add_argument("-k", "--key", required=True, help="Key")
    p.add_argument("-r", "--route", action=CommaList, default=[], help="Routes to advertise (repeatable)")
    p.set_defaults(func=debug_create_node)


def auth_register(ctx: Any, args: argparse.Namespace) -> int:
    resp = ctx.client().post("/api/v1/auth/register", {"user": args.user, "authId": args.auth_id})
    node = resp.get("node", resp)
    ctx.emit(node, f"Node {node.get('givenName', '')} registered")
    return 0


def auth_approve(ctx: Any, args: argparse.Namespace) -> int:
    resp = ctx.client().post("/api/v1/auth/approve", {"authId": args.auth_id})
    ctx.emit(resp, "Auth request approved")
    return 0


def auth_reject(ctx: Any, args: argparse.Namespace) -> int:
    resp = ctx.client().post("/api/v1/auth/reject", {"authId": args.auth_id})
    ctx.emit(resp, "Auth request rejected")
    return 0


def debug_create_node(ctx: Any, args: argparse.Namespace) -> int:
    body = {"user": args.user, "key": args.key, "name": args.name, "routes": args.route}
    resp = ctx.client().post("/api/v1/debug/node", body)
    ctx.emit(resp.get("node", resp), "Node created")
    return 0
