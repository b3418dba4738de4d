"""The `headscale` command: `serve` and the offline commands run in-process; the rest is the
HTTP client in app.cli, which talks to the running server over its unix socket."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    words = [a for a in args if not a.startswith("-")]
    if words[:1] == ["serve"]:
        from app.server.serve import main as serve_main

        return serve_main(args)
    from app.cli.main import main as cli_main

    return cli_main(args)


if __name__ == "__main__":
    raise SystemExit(main())
