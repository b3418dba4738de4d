"""The `headscale` command. The CLI (app.cli) parses every command; `serve` and the offline
policy commands need the server's own code, which the CLI package must not import, so they are
handed to it here as hooks."""

from __future__ import annotations

import sys


def _serve(argv: list[str]) -> int:
    from app.server.serve import main as serve_main

    return serve_main(argv)


def _offline_policy(action: str, cfg, text: str | None) -> str:
    from app.server.offline import offline_policy

    return offline_policy(action, cfg, text)


def _database_copy(cfg, target: str, progress) -> dict[str, int]:
    from app.server.dbcopy import database_copy

    return database_copy(cfg, target, progress)


def main(argv: list[str] | None = None) -> int:
    from app.cli import hooks
    from app.cli.main import main as cli_main

    hooks.set_serve(_serve)
    hooks.set_offline_policy(_offline_policy)
    hooks.set_database_copy(_database_copy)
    return cli_main(list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    raise SystemExit(main())
