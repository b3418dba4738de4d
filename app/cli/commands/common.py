"""Argument types and small helpers shared by the command groups."""

from __future__ import annotations

import argparse
from datetime import datetime, timedelta
from typing import Any

from app.cli.client import CliError
from app.cli.output import rfc3339
from app.config import parse_duration


def node_or_user_id(text: str) -> str:
    """A uint64 ID as the API wants it (a decimal string)."""
    t = text.strip()
    if not t.isdigit() or int(t) >= 2**64:
        raise argparse.ArgumentTypeError(f"invalid ID {text!r}: expected a positive number")
    return str(int(t))


def duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: {e}") from None


class CommaList(argparse.Action):
    """Cobra's StringSlice: ``-t a,b`` and ``-t a -t b`` both give [a, b]; ``-t ""`` gives []."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        items = list(getattr(namespace, self.dest, None) or [])
        items += [v.strip() for v in str(values).split(",") if v.strip()]
        setattr(namespace, self.dest, items)


def expiration(now: datetime, seconds: float) -> str:
    """now + duration as RFC 3339, the way headscale's --expiration flag works."""
    try:
        return rfc3339(now + timedelta(seconds=seconds))
    except OverflowError:
        raise CliError("expiration is too far in the future") from None


def add_parser(sub: Any, name: str, common: argparse.ArgumentParser, help: str,
               aliases: tuple[str, ...] = (), **kw: Any) -> argparse.ArgumentParser:
    return sub.add_parser(name, aliases=list(aliases), parents=[common], help=help,
                          description=kw.pop("description", help), **kw)


def group(sub: Any, name: str, common: argparse.ArgumentParser, help: str,
          aliases: tuple[str, ...] = ()) -> Any:
    p = add_parser(sub, name, common, help, aliases)
    p.set_defaults(func=lambda ctx, args, p=p: _group_help(ctx, p))
    return p.add_subparsers(title="commands", metavar="COMMAND")


def _group_help(ctx: Any, parser: argparse.ArgumentParser) -> int:
    ctx.stdout.write(parser.format_help())
    return 0
