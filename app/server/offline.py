"""`headscale policy … --bypass-server-and-access-database-directly`: the policy commands run
against the database file itself, for when the server is down (or refuses to start because of
its policy). The same checks apply as in the server: a policy that does not parse, resolve or
pass its tests is never stored."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from app.service.policyview import compile_view


async def _run(action: str, cfg: Any, text: str | None) -> str:
    from app.server.database import open_database

    db = await open_database(cfg)  # SQLite file or PostgreSQL, as the config says
    try:
        if action == "get":
            if cfg.policy.mode == "file":
                return Path(cfg.policy.path).read_text(encoding="utf-8")  # a one-shot command: blocking is fine
            row = await db.get_policy()
            if row is None:
                raise RuntimeError("no policy has been set")
            return row[0]
        assert text is not None
        users = await db.list_users()
        nodes = await db.list_nodes()
        try:
            compile_view(text, users, nodes, cfg.server_url, run_tests=True)
        except Exception as exc:
            if type(exc).__name__ == "PolicyError":
                raise RuntimeError(f"policy rejected: {exc}") from None
            raise
        if action == "set":
            if cfg.policy.mode != "database":
                raise RuntimeError("policy is in file mode (policy.mode: file); edit the file instead")
            await db.set_policy(text)
        return ""
    finally:
        await db.close()


def offline_policy(action: str, cfg: Any, text: str | None) -> str:
    return asyncio.run(_run(action, cfg, text))
