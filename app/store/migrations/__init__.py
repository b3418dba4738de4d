"""The ordered list of migrations, recorded by id in headscale's own ``migrations`` table.

Two kinds, applied in this order:

1. headscale's migrations 0.25 → 0.29 (``headscale.py``), keyed by headscale's gormigrate ids
   and written as our own SQL. A file headscale already migrated has those ids recorded and
   skips them; a file we migrate gets them recorded, so headscale 0.29 finds nothing to do.
2. ours: files ``NNNN_name.sql`` or ``NNNN_name.py`` in this directory (id
   ``pyheadscale-NNNN-name``). Append-only: never edit, rename or reorder a shipped one. A
   ``.py`` file defines ``migrate(conn) -> None``; a ``.sql`` file holds plain statements.
   Both run on SQLite and on PostgreSQL (``conn.dialect`` tells which; ``?`` placeholders and
   schema.sql's column types work on both, see dialect.py). They run inside the one migration transaction: no COMMIT, no PRAGMA
   that cannot run in a transaction. Keep in mind that any table or column added here makes
   the file fail headscale 0.29's start-up schema check.

headscale ignores ids it does not know (gormigrate's ValidateUnknownMigrations is off), so
our ids are invisible to it.
"""

from __future__ import annotations

import importlib.util
import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

OWN_PREFIX = "pyheadscale-"
_OWN_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.(sql|py)$")


@dataclass(frozen=True)
class Context:
    """What a migration may need besides the connection."""

    # Policy document used by the RequestTags migration when the policy lives in a file
    # (headscale policy.mode=file); None means "the latest policy row in the database".
    policy: str | None = None
    now: str = ""  # formatted timestamp for rows the migration writes


@dataclass(frozen=True)
class Migration:
    id: str
    apply: Callable[[sqlite3.Connection, Context], None] = field(compare=False)
    release: str = ""  # headscale release that introduced it, or "pyheadscale"


def _sql_migration(path: Path) -> Callable[[sqlite3.Connection, Context], None]:
    from ..dialect import ddl_for, dialect_of
    from ..schema import split_sql

    statements = split_sql(path.read_text())

    def apply(conn: sqlite3.Connection, ctx: Context) -> None:
        for stmt in statements:
            conn.execute(ddl_for(dialect_of(conn), stmt))

    return apply


def _py_migration(path: Path, mig_id: str) -> Callable[[sqlite3.Connection, Context], None]:
    spec = importlib.util.spec_from_file_location(f"{__name__}._own_{mig_id.replace('-', '_')}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load migration {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    func = module.migrate

    def apply(conn: sqlite3.Connection, ctx: Context) -> None:
        func(conn)

    return apply


def load_own(directory: Path | None = None) -> tuple[Migration, ...]:
    """Our migrations found in ``directory`` (default: this package), in number order."""
    directory = directory or Path(__file__).parent
    found: dict[str, Migration] = {}
    numbers: set[str] = set()
    for path in sorted(directory.iterdir()):
        match = _OWN_FILE.match(path.name)
        if not match:
            continue
        number, name, ext = match.groups()
        if number in numbers:
            raise ValueError(f"two migrations numbered {number} in {directory}")
        numbers.add(number)
        mig_id = f"{OWN_PREFIX}{number}-{name}"
        apply = _sql_migration(path) if ext == "sql" else _py_migration(path, mig_id)
        found[number] = Migration(mig_id, apply, "pyheadscale")
    return tuple(found[n] for n in sorted(found))


def headscale_migrations() -> tuple[Migration, ...]:
    from .headscale import STEPS

    return STEPS
