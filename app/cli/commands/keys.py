"""``headscale preauthkeys`` and ``headscale apikeys``."""

from __future__ import annotations

import argparse
from typing import Any

from app.cli.client import CliError, segment
from app.cli.commands.common import CommaList, add_parser, duration, expiration, group, node_or_user_id
from app.cli.output import fmt_time, yes_no

DEFAULT_PREAUTH_EXPIRY = "1h"
DEFAULT_APIKEY_EXPIRY = "90d"


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    pre = group(sub, "preauthkeys", common, "Handle the preauthkeys in Headscale",
                aliases=("preauthkey", "authkey", "pre"))

    p = add_parser(pre, "create", common, "Creates a new preauthkey", aliases=("c", "new"))
    p.add_argument("-u", "--user", default="",
                   help="User identifier (ID); a user name is looked up. Optional for tagged keys")
    p.add_argument("--reusable", action="store_true", help="Make the preauthkey reusable")
    p.add_argument("--ephemeral", action="store_true", help="Preauthkey for ephemeral nodes")
    p.add_argument("-e", "--expiration", type=duration, default=duration(DEFAULT_PREAUTH_EXPIRY),
                   help=f"Human-readable expiration of the key (e.g. 30m, 24h; default {DEFAULT_PREAUTH_EXPIRY})")
    p.add_argument("--tags", action=CommaList, default=[], help="Tags to assign to the node, e.g. tag:a,tag:b")
    p.set_defaults(func=preauth_create)

    p = add_parser(pre, "list", common, "List all preauthkeys", aliases=("ls", "show"))
    p.set_defaults(func=preauth_list)

    p = add_parser(pre, "expire", common, "Expire a preauthkey", aliases=("revoke", "exp", "e"))
    p.add_argument("-i", "--id", type=node_or_user_id, help="Authkey ID")
    p.set_defaults(func=preauth_expire)

    p = add_parser(pre, "delete", common, "Delete a preauthkey", aliases=("del", "rm", "d"))
    p.add_argument("-i", "--id", type=node_or_user_id, help="Authkey ID")
    p.set_defaults(func=preauth_delete)

    api = group(sub, "apikeys", common, "Handle the Api keys in Headscale", aliases=("apikey", "api"))

    p = add_parser(api, "create", common, "Creates a new Api key", aliases=("c", "new"),
                   description="Creates a new API key. The key is shown only now and cannot be "
                               "retrieved again; if you lose it, create a new one and expire the old one.")
    p.add_argument("-e", "--expiration", type=duration, default=duration(DEFAULT_APIKEY_EXPIRY),
                   help=f"Human-readable expiration of the key (e.g. 30m, 24h; default {DEFAULT_APIKEY_EXPIRY})")
    p.set_defaults(func=apikey_create)

    p = add_parser(api, "list", common, "List the Api keys for headscale", aliases=("ls", "show"))
    p.set_defaults(func=apikey_list)

    p = add_parser(api, "expire", common, "Expire an ApiKey", aliases=("revoke", "exp", "e"))
    _prefix_or_id(p)
    p.set_defaults(func=apikey_expire)

    p = add_parser(api, "delete", common, "Delete an ApiKey", aliases=("remove", "del"))
    _prefix_or_id(p)
    p.set_defaults(func=apikey_delete)


def _prefix_or_id(p: argparse.ArgumentParser) -> None:
    p.add_argument("-p", "--prefix", default="", help="ApiKey prefix")
    p.add_argument("-i", "--id", type=node_or_user_id, help="ApiKey ID")


# --- pre-auth keys ----------------------------------------------------------------------------

PREAUTH_HEADERS = ["ID", "Key/Prefix", "Reusable", "Ephemeral", "Used", "Expiration", "Created", "Owner"]


def preauth_row(k: dict) -> list[str]:
    tags = k.get("aclTags") or []
    user = k.get("user") or {}
    owner = "\n".join(tags) if tags else (user.get("name") or "-")
    return [str(k.get("id", "")), k.get("key", "") or "", yes_no(k.get("reusable")), yes_no(k.get("ephemeral")),
            yes_no(k.get("used")), fmt_time(k.get("expiration"), "-"), fmt_time(k.get("createdAt")), owner]


def _user_id(ctx: Any, user: str) -> str | None:
    """-u takes a user ID (headscale ≥ 0.26); a name is resolved to its ID as a convenience."""
    user = user.strip()
    if not user or user == "0":
        return None
    if user.isdigit():
        return str(int(user))
    users = ctx.client().get("/api/v1/user", {"name": user}).get("users") or []
    matches = [u for u in users if u.get("name") == user] or users
    if len(matches) != 1:
        raise CliError(f"no user named {user!r}" if not matches else f"more than one user is named {user!r}")
    return str(matches[0]["id"])


def preauth_create(ctx: Any, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {}
    user = _user_id(ctx, args.user)
    if user is not None:
        body["user"] = user
    body.update({"reusable": args.reusable, "ephemeral": args.ephemeral,
                 "expiration": expiration(ctx.now(), args.expiration), "aclTags": args.tags})
    key = ctx.client().post("/api/v1/preauthkey", body).get("preAuthKey") or {}
    ctx.emit(key, key.get("key", ""))
    return 0


def preauth_list(ctx: Any, args: argparse.Namespace) -> int:
    keys = ctx.client().get("/api/v1/preauthkey").get("preAuthKeys") or []
    ctx.emit_list(keys, PREAUTH_HEADERS, preauth_row)
    return 0


def _require_id(args: argparse.Namespace) -> str:
    if not args.id or args.id == "0":
        raise CliError("missing --id parameter")
    return args.id


def preauth_expire(ctx: Any, args: argparse.Namespace) -> int:
    resp = ctx.client().post("/api/v1/preauthkey/expire", {"id": _require_id(args)})
    ctx.emit(resp, "Key expired")
    return 0


def preauth_delete(ctx: Any, args: argparse.Namespace) -> int:
    resp = ctx.client().delete("/api/v1/preauthkey", {"id": _require_id(args)})
    ctx.emit(resp, "Key deleted")
    return 0


# --- API keys ---------------------------------------------------------------------------------

APIKEY_HEADERS = ["ID", "Prefix", "Expiration", "Created"]


def apikey_row(k: dict) -> list[str]:
    return [str(k.get("id", "")), k.get("prefix", "") or "", fmt_time(k.get("expiration"), "-"),
            fmt_time(k.get("createdAt"))]


def apikey_create(ctx: Any, args: argparse.Namespace) -> int:
    resp = ctx.client().post("/api/v1/apikey", {"expiration": expiration(ctx.now(), args.expiration)})
    key = resp.get("apiKey", "")
    ctx.emit(key, key)
    return 0


def apikey_list(ctx: Any, args: argparse.Namespace) -> int:
    keys = ctx.client().get("/api/v1/apikey").get("apiKeys") or []
    ctx.emit_list(keys, APIKEY_HEADERS, apikey_row)
    return 0


def _id_or_prefix(args: argparse.Namespace) -> tuple[str, str]:
    key_id = args.id if args.id and args.id != "0" else ""
    if not key_id and not args.prefix:
        raise CliError("either --id or --prefix must be provided")
    if key_id and args.prefix:
        raise CliError("only one of --id or --prefix can be provided")
    return key_id, args.prefix


def apikey_expire(ctx: Any, args: argparse.Namespace) -> int:
    key_id, prefix = _id_or_prefix(args)
    resp = ctx.client().post("/api/v1/apikey/expire", {"id": key_id} if key_id else {"prefix": prefix})
    ctx.emit(resp, "Key expired")
    return 0


def apikey_delete(ctx: Any, args: argparse.Namespace) -> int:
    key_id, prefix = _id_or_prefix(args)
    client = ctx.client()
    if key_id:
        # The route addresses the key by prefix in the path; find the prefix of that ID (the
        # list shows it masked, hskey-api-{prefix}-***, which the server accepts).
        keys = client.get("/api/v1/apikey").get("apiKeys") or []
        match = [k for k in keys if str(k.get("id")) == key_id]
        if not match:
            raise CliError(f"API key with ID {key_id} not found")
        prefix = match[0].get("prefix", "")
    resp = client.delete(f"/api/v1/apikey/{segment(prefix)}")
    ctx.emit(resp, "Key deleted")
    return 0
