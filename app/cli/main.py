"""The ``headscale`` command line (HEADSCALE.md §1): argparse root and dispatch.

Global flags, accepted before or after the command as with cobra: ``-c/--config``,
``-o/--output`` (json, json-line, yaml), ``--force``. Exit status: 0 ok, 1 error (one line,
``Error: …``), 2 bad usage.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import IO

from app.cli.client import CliError
from app.cli.commands import auth, database, keys, local, nodes, policy, users
from app.cli.context import Context
from app.cli.output import FORMATS

GROUPS = (local, users, nodes, keys, auth, policy, database)
BOOL_FLAGS = {"--force", "--reusable", "--ephemeral", "--disable", "--dev",
              "--bypass-server-and-access-database-directly", "--bypass-grpc-and-access-database-directly"}

DESCRIPTION = """\
headscale - a Tailscale control server

headscale is an open source implementation of the Tailscale control server
(this is pyheadscale, a Python re-implementation with the same CLI, config and API)."""


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        m = re.match(r"argument COMMAND: invalid choice: ('[^']*')", message)
        if m:
            message = f"unknown command {m.group(1)} for {self.prog!r}"
        raise UsageError(f"{message}\nRun '{self.prog} --help' for usage.")


def _global_flags(p: argparse.ArgumentParser, suppress: bool) -> None:
    d = argparse.SUPPRESS
    p.add_argument("-c", "--config", metavar="PATH", default=d if suppress else "",
                   help="config file (default: $HEADSCALE_CONFIG or config.yaml in /etc/headscale, "
                        "~/.headscale, .)")
    p.add_argument("-o", "--output", choices=("", *FORMATS), default=d if suppress else "",
                   help="Output format. Empty for human-readable, 'json', 'json-line' or 'yaml'")
    p.add_argument("--force", action="store_true", default=d if suppress else False,
                   help="Disable prompts and forces the execution")
    p.add_argument("--dev", action="store_true", default=d if suppress else False,
                   help="Use the embedded development configuration (./data, as `make run`)")


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    _global_flags(common, suppress=True)
    root = _Parser(prog="headscale", description=DESCRIPTION,
                   formatter_class=argparse.RawDescriptionHelpFormatter)
    _global_flags(root, suppress=False)
    sub = root.add_subparsers(title="commands", metavar="COMMAND", parser_class=_Parser)
    for g in GROUPS:
        g.register(sub, common)
    return root


def _normalise(argv: list[str]) -> list[str]:
    """Cobra accepts ``--flag=true|false`` for booleans; argparse only ``--flag``."""
    out = []
    for a in argv:
        name, eq, value = a.partition("=")
        if eq and name in BOOL_FLAGS:
            v = value.strip().lower()
            if v in ("true", "1", "t", "yes"):
                out.append(name)
                continue
            if v in ("false", "0", "f", "no"):
                continue
        out.append(a)
    return out


def main(
    argv: list[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    stdin: IO[str] | None = None,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
    now: Callable[[], datetime] | None = None,
) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    err = stderr or sys.stderr
    out = stdout or sys.stdout
    parser = build_parser()
    try:
        args = parser.parse_args(_normalise(argv))
    except UsageError as e:
        err.write(f"Error: {e}\n")
        return 2
    except SystemExit as e:  # --help
        return int(e.code or 0)
    if not hasattr(args, "func"):
        out.write(parser.format_help())
        return 0
    ctx = Context(args, env=env, stdin=stdin, stdout=out, stderr=err, now=now, argv=argv)
    try:
        return int(args.func(ctx, args) or 0)
    except CliError as e:
        ctx.error(e.message)
        return e.code
    except KeyboardInterrupt:
        err.write("\n")
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
