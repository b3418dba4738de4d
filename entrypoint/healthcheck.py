"""The image's HEALTHCHECK: GET /health on the server's listener (HEADSCALE_LISTEN_ADDR).

    python -m entrypoint.healthcheck      exit 0 when /health answers 200, else 1
"""

from __future__ import annotations

import os
import sys
import urllib.request

from entrypoint.env import BY_NAME


def url(environ: dict[str, str] | os._Environ = os.environ) -> str:
    listen = environ.get("HEADSCALE_LISTEN_ADDR") or BY_NAME["HEADSCALE_LISTEN_ADDR"].default or ""
    host, _, port = listen.rpartition(":")
    if host in ("", "0.0.0.0", "::", "[::]"):
        host = "127.0.0.1"
    return f"http://{host}:{port}/health"


def main() -> int:
    try:
        with urllib.request.urlopen(url(), timeout=4) as response:
            return 0 if response.status == 200 else 1
    except Exception as error:  # noqa: BLE001 - any failure means unhealthy
        print(f"unhealthy: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
