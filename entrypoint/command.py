"""A command given to the container runs instead of the appliance boot (docker-compose style).

headscale's container tutorials mount their own /etc/headscale/config.yaml and give the image a
command: `serve`, `headscale serve`, `users list`, ... With no command the image boots the Fly
appliance; with one, the command replaces this process (same PID, signals go straight to it) and
runs as the image's service user (uid 10001, the Dockerfile's USER).
"""

from __future__ import annotations

# The CLI's top-level commands (tests/entrypoint/test_command.py keeps this equal to app/cli's).
HEADSCALE_COMMANDS = frozenset({
    "api", "apikey", "apikeys", "auth", "authkey", "configtest", "database", "db", "debug", "dumpConfig", "gen", "generate",
    "health", "node", "nodes", "policy", "pre", "preauthkey", "preauthkeys", "serve", "user", "users", "version",
})


def argv_for(args: list[str]) -> list[str] | None:
    """None: boot the appliance. Otherwise the argv to exec: `serve` means `headscale serve`."""
    if not args:
        return None
    if args[0] in HEADSCALE_COMMANDS or args[0].startswith("-"):
        return ["headscale", *args]
    return list(args)
