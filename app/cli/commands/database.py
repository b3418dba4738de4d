"""``headscale database copy --to TARGET``: copy the configured database into another engine
(SQLite → PostgreSQL, or PostgreSQL → SQLite), with every row checked. The copy runs in this
process (hooks.database_copy); no server is needed, and a running one may keep running: the
source is read in one snapshot transaction."""

from __future__ import annotations

import argparse
import re
from typing import Any

from app.cli import hooks
from app.cli.client import CliError
from app.cli.commands.common import add_parser, group

_PASSWORD = re.compile(r"(://[^:/@]+:)[^@]*@")


def masked(target: str) -> str:
    """A target for display: no password."""
    return re.sub(r"(password=)\S+", r"\1***", _PASSWORD.sub(r"\1***@", target))


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    db = group(sub, "database", common, "Database commands", aliases=("db",))
    p = add_parser(db, "copy", common, "Copy the database into another engine",
                   description="Copy every row of the configured database (database.type) into TARGET: "
                               "a PostgreSQL URL (postgres://user:password@host:5432/name?sslmode=...) or "
                               "an SQLite file path. The target must be empty; the copy is compared row "
                               "by row with the source before it is committed. Then point database.* at "
                               "the target and restart the server.")
    p.add_argument("--to", required=True, metavar="TARGET", help="postgres://… URL or SQLite file path")
    p.set_defaults(func=copy)


def copy(ctx: Any, args: argparse.Namespace) -> int:
    if hooks.database_copy is None:
        raise CliError("database copy is not available in this build")
    target = args.to.strip()
    if target.startswith("sqlite://"):
        target = target.removeprefix("sqlite://")
    if not target:
        raise CliError("--to: give a postgres:// URL or an SQLite file path")
    try:
        counts = hooks.database_copy(ctx.config(), target, lambda line: ctx.stderr.write(line + "\n"))
    except CliError:
        raise
    except Exception as exc:  # noqa: BLE001 - one line, never a traceback
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CliError(f"database copy failed, target left without data: {text}") from None
    summary = ", ".join(f"{t} {n}" for t, n in counts.items())
    ctx.emit({"target": masked(target), "rows": counts},
             f"copied into {masked(target)}: {summary}\n"
             "Point database.* at the target and start the server there.")
    return 0
