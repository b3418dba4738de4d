"""``headscale policy``: get, set, check."""

from __future__ import annotations

import argparse
from typing import Any

from app.cli import hooks
from app.cli.client import CliError
from app.cli.commands.common import add_parser, group
from app.core.policy.legacy import is_yaml_name, yaml_to_json

BYPASS = "bypass-server-and-access-database-directly"
BYPASS_OLD = "bypass-grpc-and-access-database-directly"  # headscale 0.29's name


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    policy = group(sub, "policy", common, "Manage the Headscale ACL Policy")

    p = add_parser(policy, "get", common, "Print the current ACL Policy", aliases=("show", "view", "fetch"))
    _bypass(p)
    p.set_defaults(func=get)

    p = add_parser(policy, "set", common, "Updates the ACL Policy", aliases=("put", "update"),
                   description="Replace the policy with the given HuJSON file. Only works with "
                               "policy.mode database.")
    p.add_argument("-f", "--file", required=True, help="Path to a policy file in HuJSON format")
    _bypass(p)
    p.set_defaults(func=set_)

    p = add_parser(policy, "check", common, "Check the Policy file for errors",
                   description="Validate a policy against the server's users and nodes, running "
                               "its tests and sshTests blocks.")
    p.add_argument("-f", "--file", required=True, help="Path to a policy file in HuJSON format")
    _bypass(p)
    p.set_defaults(func=check)


def _bypass(p: argparse.ArgumentParser) -> None:
    p.add_argument(f"--{BYPASS}", f"--{BYPASS_OLD}", dest="bypass", action="store_true",
                   help="Use the config to open the database directly, without a running server")


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise CliError(f"reading policy file: {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise CliError(f"reading policy file: {path}: not UTF-8 text") from None
    if is_yaml_name(path):   # headscale 0.22 policies could be YAML; send them as JSON
        try:
            return yaml_to_json(text)
        except ValueError as e:
            raise CliError(f"reading policy file: {path}: {e}") from None
    return text


def _offline(ctx: Any, action: str, text: str | None) -> str:
    if hooks.offline_policy is None:
        raise CliError(f"--{BYPASS} is not yet supported offline by this build; "
                       "start the server and run the command without it")
    if not ctx.confirm("DO NOT run this command if an instance of headscale is running, "
                       "are you sure headscale is not running?"):
        raise CliError("command aborted by user")
    try:
        return hooks.offline_policy(action, ctx.config(), text) or ""
    except CliError:
        raise
    except Exception as e:  # noqa: BLE001 - the hook reports any problem as an exception
        raise CliError(str(e) or e.__class__.__name__) from None


def get(ctx: Any, args: argparse.Namespace) -> int:
    if args.bypass:
        text = _offline(ctx, "get", None)
    else:
        text = ctx.client().get("/api/v1/policy").get("policy", "")
    ctx.print(text)  # HuJSON already: -o does not apply (as in headscale)
    return 0


def set_(ctx: Any, args: argparse.Namespace) -> int:
    text = _read(args.file)
    if args.bypass:
        _offline(ctx, "set", text)
    else:
        ctx.client().put("/api/v1/policy", {"policy": text})
    ctx.print("Policy updated.")
    return 0


def check(ctx: Any, args: argparse.Namespace) -> int:
    text = _read(args.file)
    if args.bypass:
        _offline(ctx, "check", text)
    else:
        ctx.client().post("/api/v1/policy/check", {"policy": text})
    ctx.print("Policy is valid")
    return 0
