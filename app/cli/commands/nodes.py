"""``headscale nodes``: list, list-routes, approve-routes, register, expire, rename, delete, tag,
backfillips."""

from __future__ import annotations

import argparse
from datetime import UTC
from typing import Any

from app.cli.client import CliError, segment
from app.cli.commands.common import CommaList, add_parser, group, node_or_user_id
from app.cli.output import fmt_time, parse_time, rfc3339, short_key, yes_no


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    nodes = group(sub, "nodes", common, "Manage the nodes of Headscale", aliases=("node",))

    p = add_parser(nodes, "list", common, "List nodes", aliases=("ls", "show"))
    p.add_argument("-u", "--user", default="", help="Filter by user")
    p.set_defaults(func=list_)

    p = add_parser(nodes, "list-routes", common, "List routes available on nodes", aliases=("lsr", "routes"))
    p.add_argument("-i", "--identifier", type=node_or_user_id, help="Node identifier (ID)")
    p.set_defaults(func=list_routes)

    p = add_parser(nodes, "approve-routes", common, "Manage the approved routes of a node")
    _node_id(p)
    p.add_argument("-r", "--routes", action=CommaList, default=[],
                   help='Routes to approve, comma-separated ("10.0.0.0/8,192.168.0.0/24"); '
                        '"" removes all approved routes')
    p.set_defaults(func=approve_routes)

    p = add_parser(nodes, "register", common,
                   "Registers a node to your network (deprecated: use 'headscale auth register')")
    p.add_argument("-u", "--user", required=True, help="User")
    p.add_argument("-k", "--key", required=True, help="Key (registration ID)")
    p.set_defaults(func=register_node)

    p = add_parser(nodes, "expire", common, "Expire (log out) a node in your network",
                   aliases=("logout", "exp", "e"),
                   description="Expiring a node keeps it in the database and forces it to "
                               "re-authenticate. --disable turns key expiry off instead.")
    _node_id(p)
    p.add_argument("-e", "--expiry", default="",
                   help="Expire at this time (RFC 3339, e.g. 2025-08-27T10:00:00Z); empty: now")
    p.add_argument("-d", "--disable", action="store_true", help="Disable key expiry (node never expires)")
    p.set_defaults(func=expire)

    p = add_parser(nodes, "rename", common, "Renames a node in your network")
    _node_id(p)
    p.add_argument("new_name", metavar="NEW_NAME")
    p.set_defaults(func=rename)

    p = add_parser(nodes, "delete", common, "Delete a node", aliases=("del",))
    _node_id(p)
    p.set_defaults(func=delete)

    p = add_parser(nodes, "tag", common, "Manage the tags of a node", aliases=("tags", "t"))
    _node_id(p)
    p.add_argument("-t", "--tags", action=CommaList, default=[], help="Tags to set, e.g. tag:a,tag:b")
    p.set_defaults(func=tag)

    p = add_parser(nodes, "backfillips", common, "Backfill IPs missing from nodes",
                   description="Add or remove node IPs to match the configured prefixes.")
    p.set_defaults(func=backfill_ips)


def _node_id(p: argparse.ArgumentParser) -> None:
    p.add_argument("-i", "--identifier", type=node_or_user_id, required=True, help="Node identifier (ID)")


NODE_HEADERS = ["ID", "Hostname", "Name", "MachineKey", "NodeKey", "User", "Tags", "IP addresses",
                "Ephemeral", "Last seen", "Expiration", "Connected", "Expired"]


def node_row(ctx: Any, n: dict) -> list[str]:
    expiry = parse_time(n.get("expiry"))
    pak = n.get("preAuthKey") or {}
    user = n.get("user") or {}
    return [
        str(n.get("id", "")),
        n.get("name", "") or "",
        n.get("givenName", "") or "",
        short_key(n.get("machineKey")),
        short_key(n.get("nodeKey")),
        user.get("name", "") or "",
        "\n".join(n.get("tags") or []),
        "\n".join(n.get("ipAddresses") or []),
        yes_no(pak.get("ephemeral")),
        fmt_time(n.get("lastSeen")),
        fmt_time(n.get("expiry"), "N/A"),
        "online" if n.get("online") else "offline",
        "yes" if expiry is not None and expiry < ctx.now().astimezone(UTC) else "no",
    ]


def list_(ctx: Any, args: argparse.Namespace) -> int:
    nodes = ctx.client().get("/api/v1/node", {"user": args.user}).get("nodes") or []
    ctx.emit_list(nodes, NODE_HEADERS, lambda n: node_row(ctx, n))
    return 0


ROUTE_HEADERS = ["ID", "Hostname", "Approved", "Available", "Serving (Primary)"]


def list_routes(ctx: Any, args: argparse.Namespace) -> int:
    nodes = ctx.client().get("/api/v1/node").get("nodes") or []
    if args.identifier:
        nodes = [n for n in nodes if str(n.get("id")) == args.identifier]
    nodes = [n for n in nodes if n.get("subnetRoutes") or n.get("approvedRoutes") or n.get("availableRoutes")]
    ctx.emit_list(nodes, ROUTE_HEADERS, lambda n: [
        str(n.get("id", "")), n.get("givenName", "") or "",
        "\n".join(n.get("approvedRoutes") or []), "\n".join(n.get("availableRoutes") or []),
        "\n".join(n.get("subnetRoutes") or []),
    ])
    return 0


def approve_routes(ctx: Any, args: argparse.Namespace) -> int:
    resp = ctx.client().post(f"/api/v1/node/{segment(args.identifier)}/approve_routes", {"routes": args.routes})
    ctx.emit(resp.get("node", resp), "Node updated")
    return 0


def register_node(ctx: Any, args: argparse.Namespace) -> int:
    ctx.warn("Command \"register\" is deprecated, use 'headscale auth register --auth-id <id> --user <user>' instead")
    resp = ctx.client().post("/api/v1/node/register", query={"user": args.user, "key": args.key})
    node = resp.get("node", resp)
    ctx.emit(node, f"Node {node.get('givenName', '')} registered")
    return 0


def expire(ctx: Any, args: argparse.Namespace) -> int:
    path = f"/api/v1/node/{segment(args.identifier)}/expire"
    if args.disable:
        resp = ctx.client().post(path, query={"disableExpiry": True})
        ctx.emit(resp.get("node", resp), "Node expiry disabled")
        return 0
    now = ctx.now()
    when = now
    if args.expiry:
        when = parse_time(args.expiry) if "T" in args.expiry.upper() else None
        if when is None or not _has_offset(args.expiry):
            raise CliError(f"parsing expiry time: {args.expiry!r} is not an RFC 3339 time "
                           "(for example 2025-08-27T10:00:00Z)")
    resp = ctx.client().post(path, query={"expiry": rfc3339(when)})
    ctx.emit(resp.get("node", resp), "Node expired" if when <= now else "Node expiration updated")
    return 0


def _has_offset(text: str) -> bool:
    t = text.strip().upper()
    return t.endswith("Z") or (len(t) > 6 and t[-6] in "+-" and t[-3] == ":")


def rename(ctx: Any, args: argparse.Namespace) -> int:
    if not args.new_name.strip():
        raise CliError("NEW_NAME must not be empty")
    resp = ctx.client().post(f"/api/v1/node/{segment(args.identifier)}/rename/{segment(args.new_name)}")
    ctx.emit(resp.get("node", resp), "Node renamed")
    return 0


def delete(ctx: Any, args: argparse.Namespace) -> int:
    client = ctx.client()
    node = client.get(f"/api/v1/node/{segment(args.identifier)}").get("node") or {}
    if not ctx.confirm(f"Do you want to remove the node {node.get('name', args.identifier)}?"):
        ctx.emit({"Result": "Node not deleted"}, "Node not deleted")
        return 0
    client.delete(f"/api/v1/node/{segment(args.identifier)}")
    ctx.emit({"Result": "Node deleted"}, "Node deleted")
    return 0


def tag(ctx: Any, args: argparse.Namespace) -> int:
    resp = ctx.client().post(f"/api/v1/node/{segment(args.identifier)}/tags", {"tags": args.tags})
    ctx.emit(resp.get("node", resp), "Node updated")
    return 0


def backfill_ips(ctx: Any, args: argparse.Namespace) -> int:
    if not ctx.confirm("Are you sure that you want to assign/remove IPs to/from nodes?"):
        return 0
    resp = ctx.client().post("/api/v1/node/backfillips", query={"confirmed": True})
    if ctx.output:
        ctx.emit(resp, "")
    else:
        changes = resp.get("changes") or []
        ctx.print("\n".join(changes + ["Node IPs backfilled successfully"]))
    return 0
