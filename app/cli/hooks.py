"""In-process hooks the ``headscale`` entry point (app.main) may install before calling
``app.cli.main.main``. The CLI cannot import the server or the store (tests/test_layering.py),
so work that needs them is handed over through these callables.

``offline_policy(action, cfg, policy_text) -> str``
    For ``policy get|set|check --bypass-server-and-access-database-directly``: open the
    database named by ``cfg`` without a running server. ``action`` is "get" (return the stored
    policy text), "set" (validate and store ``policy_text``; return it) or "check" (validate
    ``policy_text`` against the database's users and nodes; return ""). Raise any exception
    with a one-line message to report an error.

``database_copy(cfg, target, progress) -> dict[str, int]``
    For ``headscale database copy --to TARGET``: copy the database ``cfg`` names into
    ``target`` (PostgreSQL URL or SQLite path); returns rows per table; ``progress(line)``
    reports steps.

``serve(argv) -> int``
    ``headscale serve`` when it reaches the CLI (app.main normally dispatches it first).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

offline_policy: Callable[[str, Any, str | None], str] | None = None
serve: Callable[[list[str]], int] | None = None
database_copy: Callable[[Any, str, Callable[[str], None]], dict[str, int]] | None = None


def set_offline_policy(fn: Callable[[str, Any, str | None], str] | None) -> None:
    global offline_policy
    offline_policy = fn


def set_serve(fn: Callable[[list[str]], int] | None) -> None:
    global serve
    serve = fn


def set_database_copy(fn: Callable[[Any, str, Callable[[str], None]], dict[str, int]] | None) -> None:
    global database_copy
    database_copy = fn
