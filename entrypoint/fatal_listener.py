"""supervisord event listener: a program that went FATAL takes the whole machine down.

supervisord restarts a crashed program a few times; when it gives up (FATAL), the control server
would otherwise keep running without replication (or not run at all) while the Machine looks
healthy to Fly. This listener writes a flag file (so the entrypoint exits non-zero and Fly
restarts the Machine, which restores from the replica) and asks supervisord to shut down in
order: server first, Litestream last.

Protocol (supervisor docs, "Event Listener Notification Protocol"): write `READY\\n` on stdout,
read a header line of `key:value` tokens and `len` bytes of payload from stdin, answer
`RESULT 2\\nOK`. stdout is the protocol channel: everything human goes to stderr.

    python -m entrypoint.fatal_listener <flag-file>
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path


def parse_tokens(line: str) -> dict[str, str]:
    return dict(token.split(":", 1) for token in line.split() if ":" in token)


def handle(headers: dict[str, str], payload: str, flag: Path, supervisord_pid: int) -> None:
    if headers.get("eventname") != "PROCESS_STATE_FATAL":
        return
    event = parse_tokens(payload.splitlines()[0] if payload else "")
    name = event.get("processname", "?")
    print(f"fatal_exit: program {name!r} entered FATAL; shutting everything down so the machine restarts",
          file=sys.stderr, flush=True)
    flag.parent.mkdir(parents=True, exist_ok=True)
    flag.write_text(name + "\n")
    os.kill(supervisord_pid, signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m entrypoint.fatal_listener <flag-file>", file=sys.stderr)
        return 2
    flag = Path(args[0])
    stdin, stdout = sys.stdin, sys.stdout
    while True:
        stdout.write("READY\n")
        stdout.flush()
        line = stdin.readline()
        if not line:
            return 0
        headers = parse_tokens(line)
        payload = stdin.read(int(headers.get("len", "0")))
        handle(headers, payload, flag, os.getppid())
        stdout.write("RESULT 2\nOK")
        stdout.flush()


if __name__ == "__main__":
    raise SystemExit(main())
