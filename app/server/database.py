"""Open the database the config names: SQLite (database.sqlite.path) or PostgreSQL
(database.postgres.*, headscale's keys and meanings)."""

from __future__ import annotations

import os
from typing import Any

from psycopg.conninfo import make_conninfo


def is_postgres(cfg: Any) -> bool:
    return str(cfg.database.type).lower() in ("postgres", "postgresql")


def _sslmode(value: Any) -> str | None:
    """headscale: a boolean-looking value means off (``disable``) or libpq's default; anything
    else is passed on as ``sslmode``."""
    text = str(value).strip().lower()
    if text in ("false", "0", "f", "no", ""):
        return "disable"
    if text in ("true", "1", "t", "yes"):
        return None
    return str(value).strip()


def postgres_conninfo(cfg: Any) -> str:
    pg = cfg.database.postgres
    params: dict[str, Any] = {"host": pg.host, "dbname": pg.name, "user": pg.user}
    if int(pg.port or 0):
        params["port"] = int(pg.port)
    password = getattr(pg, "pass_", None) or cfg.get("database.postgres.pass")
    if password:
        params["password"] = password
    mode = _sslmode(pg.ssl)
    if mode:
        params["sslmode"] = mode
    return make_conninfo("", **params)


def postgres_display(cfg: Any) -> str:
    """The target without secrets, for logs and errors."""
    pg = cfg.database.postgres
    port = f":{int(pg.port)}" if int(pg.port or 0) else ""
    return f"postgres://{pg.user}@{pg.host}{port}/{pg.name}"


async def open_database(cfg: Any, *, policy: str | None = None) -> Any:
    from app.store import Database

    if is_postgres(cfg):
        pg = cfg.database.postgres
        return await Database.open_postgres(
            postgres_conninfo(cfg), policy=policy, max_open=int(pg.max_open_conns),
            max_idle=int(pg.max_idle_conns), idle_seconds=float(pg.conn_max_idle_time_secs),
            display=postgres_display(cfg), sql_debug=bool(cfg.database.debug))
    path = cfg.database.sqlite.path
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return await Database.open(path, policy=policy, sql_debug=bool(cfg.database.debug))
