"""``headscale users``: create, list, rename, destroy."""

from __future__ import annotations

import argparse
from typing import Any

from app.cli.client import CliError, segment
from app.cli.commands.common import add_parser, group, node_or_user_id
from app.cli.output import fmt_time


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    users = group(sub, "users", common, "Manage the users of Headscale", aliases=("user",))

    p = add_parser(users, "create", common, "Creates a new user", aliases=("c", "new"))
    p.add_argument("name", metavar="NAME")
    p.add_argument("-d", "--display-name", default="", help="Display name")
    p.add_argument("-e", "--email", default="", help="Email")
    p.add_argument("-p", "--picture-url", default="", help="Profile picture URL")
    p.set_defaults(func=create)

    p = add_parser(users, "list", common, "List all the users", aliases=("ls", "show"))
    _id_and_name(p)
    p.add_argument("-e", "--email", default="", help="Email")
    p.set_defaults(func=list_)

    p = add_parser(users, "rename", common, "Renames a user", aliases=("mv",))
    _id_and_name(p)
    p.add_argument("-r", "--new-name", required=True, help="New username")
    p.set_defaults(func=rename)

    p = add_parser(users, "destroy", common, "Destroys a user", aliases=("delete",))
    _id_and_name(p)
    p.set_defaults(func=destroy)


def _id_and_name(p: argparse.ArgumentParser) -> None:
    p.add_argument("-i", "--identifier", type=node_or_user_id, help="User identifier (ID)")
    p.add_argument("-n", "--name", default="", help="Username")


USER_HEADERS = ["ID", "Name", "Username", "Email", "Created"]


def user_row(u: dict) -> list[str]:
    return [str(u.get("id", "")), u.get("displayName", "") or "", u.get("name", "") or "",
            u.get("email", "") or "", fmt_time(u.get("createdAt"))]


def create(ctx: Any, args: argparse.Namespace) -> int:
    body = {"name": args.name, "displayName": args.display_name, "email": args.email,
            "pictureUrl": args.picture_url}
    resp = ctx.client().post("/api/v1/user", body)
    ctx.emit(resp.get("user", resp), "User created")
    return 0


def list_(ctx: Any, args: argparse.Namespace) -> int:
    query: dict[str, str] = {}
    if args.identifier and args.identifier != "0":  # filter by one parameter at most
        query["id"] = args.identifier
    elif args.name:
        query["name"] = args.name
    elif args.email:
        query["email"] = args.email
    users = ctx.client().get("/api/v1/user", query).get("users") or []
    ctx.emit_list(users, USER_HEADERS, user_row)
    return 0


def find_one(ctx: Any, args: argparse.Namespace) -> dict:
    """The single user named by --identifier or --name."""
    if not args.identifier and not args.name:
        raise CliError("--name or --identifier flag is required")
    query = {"id": args.identifier} if args.identifier else {"name": args.name}
    users = ctx.client().get("/api/v1/user", query).get("users") or []
    if args.identifier and args.name:
        users = [u for u in users if u.get("name") == args.name]
    if not users:
        raise CliError("no user matches " + (f"ID {args.identifier}" if args.identifier else repr(args.name)))
    if len(users) > 1:
        raise CliError("multiple users match query, specify an ID")
    return users[0]


def rename(ctx: Any, args: argparse.Namespace) -> int:
    user = find_one(ctx, args)
    resp = ctx.client().post(f"/api/v1/user/{segment(user['id'])}/rename/{segment(args.new_name)}")
    ctx.emit(resp.get("user", resp), "User renamed")
    return 0


def destroy(ctx: Any, args: argparse.Namespace) -> int:
    user = find_one(ctx, args)
    prompt = (f"Do you want to remove the user {user.get('name', '')!r} ({user['id']}) and any "
              "associated preauthkeys?")
    if not ctx.confirm(prompt):
        ctx.emit({"Result": "User not destroyed"}, "User not destroyed")
        return 0
    resp = ctx.client().delete(f"/api/v1/user/{segment(user['id'])}")
    ctx.emit(resp, "User destroyed")
    return 0
