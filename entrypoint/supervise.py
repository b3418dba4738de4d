"""Run `supervisord -n` as a child: forward SIGTERM/SIGINT, exit non-zero after a FATAL.

supervisord exits 0 after the FATAL listener asked it to stop; on Fly a clean exit leaves the
Machine stopped instead of restarted, so the entrypoint turns the listener's flag file into exit
status 1. supervisord runs in its own session so that a signal sent to the entrypoint's process
group (a terminal's Ctrl-C) reaches it once, through the entrypoint, and the programs stop in
supervisord's order (server first, Litestream last).
"""

from __future__ import annotations

import logging
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from types import FrameType

from entrypoint.layout import Paths, Tools

log = logging.getLogger("entrypoint")

FORWARDED = (signal.SIGTERM, signal.SIGINT)


def supervisord_argv(tools: Tools, paths: Paths) -> list[str]:
    return [tools.supervisord, "-n", "-c", str(paths.supervisord_config)]


def run(
    tools: Tools,
    paths: Paths,
    environ: Mapping[str, str],
    while_running: Callable[[threading.Event], None] | None = None,
) -> int:
    """Run supervisord until it exits; `while_running(stopped)` runs in a thread meanwhile."""
    paths.fatal_flag.unlink(missing_ok=True)
    child: subprocess.Popen[bytes] | None = None
    ready = False  # supervisord handles signals once it wrote its pidfile; until then, queue them
    pending: list[int] = []

    def forward(signum: int, frame: FrameType | None) -> None:
        log.info("received %s: stopping the server, then Litestream (final sync)", signal.Signals(signum).name)
        if child is None or not ready:
            pending.append(signum)
            return
        try:
            child.send_signal(signum)
        except ProcessLookupError:
            pass

    previous = {s: signal.signal(s, forward) for s in FORWARDED}
    stopped = threading.Event()
    helper: threading.Thread | None = None
    try:
        child = subprocess.Popen(supervisord_argv(tools, paths), env=dict(environ), start_new_session=True)
        log.info("supervisord started (pid %d)", child.pid)
        while not ready and child.poll() is None:
            ready = _pidfile_is(paths, child.pid)
            if not ready:
                time.sleep(0.02)
        for signum in pending:
            child.send_signal(signum)
        if while_running is not None:
            helper = threading.Thread(target=while_running, args=(stopped,), name="while-running", daemon=True)
            helper.start()
        status = child.wait()
    finally:
        stopped.set()
        for s, handler in previous.items():
            signal.signal(s, handler)
    if helper is not None:
        helper.join(timeout=5)
    if paths.fatal_flag.exists():
        program = paths.fatal_flag.read_text().strip() or "a program"
        log.error("%s entered FATAL and everything was stopped: exiting with status 1 so the machine restarts",
                  program)
        return 1
    if status != 0:
        log.error("supervisord exited with status %d", status)
        return status if status > 0 else 128 - status
    log.info("supervisord stopped cleanly")
    return 0


def _pidfile_is(paths: Paths, pid: int) -> bool:
    try:
        return int(paths.supervisor_pidfile.read_text().strip() or 0) == pid
    except (FileNotFoundError, ValueError):
        return False


def idle(status: int) -> int:
    """ENTRYPOINT_IDLE: keep the Machine up (for `fly ssh console`) until SIGTERM/SIGINT."""
    log.warning("ENTRYPOINT_IDLE=true: idling; connect with `fly ssh console`, unset ENTRYPOINT_IDLE to boot")
    signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
    received = signal.sigwait(FORWARDED)
    log.info("received %s while idle", signal.Signals(received).name)
    return status

