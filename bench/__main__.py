"""Run every benchmark in turn with its defaults: ``python -m bench [control] [derp] [policy] [policy_flush] [flood] [durability] [nodes_api]``.

Each module's ``main(argv)`` is called with an empty argument list; a module that is missing or
has no ``main()`` is skipped. For options, run one bench directly (``python -m bench.<name>_bench -h``).
"""

from __future__ import annotations

import importlib
import sys
import time
import traceback

BENCHES = ("control", "derp", "policy", "policy_flush", "flood", "durability", "nodes_api")


def main(argv: list[str] | None = None) -> int:
    names = list(sys.argv[1:] if argv is None else argv) or list(BENCHES)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        print(f"unknown bench {unknown}; choose from {', '.join(BENCHES)}", file=sys.stderr)
        return 2
    failed = []
    for name in names:
        try:
            module = importlib.import_module(f"bench.{name}_bench")
        except ImportError as exc:
            print(f"== {name}: skipped ({exc})", flush=True)
            continue
        entry = getattr(module, "main", None)
        if entry is None:
            print(f"== {name}: skipped (no main())", flush=True)
            continue
        print(f"== {name} bench", flush=True)
        t0 = time.monotonic()
        try:
            rc = entry([])
        except SystemExit as exc:
            rc = exc.code
        except Exception:  # noqa: BLE001 - one broken bench must not stop the others
            traceback.print_exc()
            rc = 1
        bad = isinstance(rc, str) or (isinstance(rc, int) and not isinstance(rc, bool) and rc != 0)   # some mains return figures
        print(f"== {name}: {f'failed ({rc})' if bad else 'ok'} in {time.monotonic() - t0:.0f} s\n", flush=True)
        if bad:
            failed.append(name)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
