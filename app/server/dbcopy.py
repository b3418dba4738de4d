"""`headscale database copy`: the configured database (source) into another engine (target)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from app.server.database import is_postgres, postgres_conninfo


def database_copy(cfg: Any, target: str, progress: Callable[[str], None] | None = None) -> dict[str, int]:
    from app.store.copy import CopyError, copy_database

    if is_postgres(cfg):
        source = postgres_conninfo(cfg)
    else:
        source = cfg.database.sqlite.path
        if not os.path.exists(source):
            raise CopyError(f"the configured SQLite database {source} does not exist (database.sqlite.path)")
    if not target.startswith(("postgres://", "postgresql://")):
        target = os.path.abspath(target)
        if os.path.abspath(source) == target:
            raise CopyError("the target is the configured database itself")
    policy = None
    if cfg.policy.mode == "file" and cfg.policy.path and os.path.exists(cfg.policy.path):
        with open(cfg.policy.path, encoding="utf-8") as f:
            policy = f.read()
    return copy_database(source, target, policy=policy, progress=progress)
