"""Keeping the log bounded when strangers misbehave.

- ``refused(log, source, reason)``: a refused handshake, connection or request from ``source``
  writes at most one line per source and reason per ``INTERVAL`` (app/core/ratelog.py); the
  refusals in between are counted and reported on the next line, or by ``flush_task``.
- ``install_exception_handler``: errors asyncio reports outside any task that handles them
  (a peer resetting a socket mid-write, ``accept()`` running out of descriptors, a TLS
  handshake failing) become one aggregated line without a traceback. Everything else is a bug
  and keeps asyncio's default report.
- ``quiet_sql_library``: aiosqlite logs every statement with its parameters at DEBUG (key
  prefixes, bcrypt hashes); its logger is held at WARNING. SQL statements are logged by the
  store itself, only with ``database.debug``, and with literals redacted (app/store/db.py).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time

from app.core.ratelog import RateLog

INTERVAL = 60.0
_rates = RateLog(INTERVAL)
_loggers: dict[tuple[str, str], logging.Logger] = {}

log = logging.getLogger("headscale.edge")


def refused(logger: logging.Logger, source: str, reason: str, level: int = logging.INFO) -> None:
    earlier = _rates.hit(source, reason, time.monotonic())
    if earlier is None:
        if len(_loggers) < _rates.max_keys:
            _loggers[(source, reason)] = logger
        return
    if earlier:
        logger.log(level, "%s from %s (and %d more in the last %d s)", reason, source, earlier, INTERVAL)
    else:
        logger.log(level, "%s from %s", reason, source)


def failed(logger: logging.Logger, source: str, what: str, exc: BaseException) -> None:
    """An unexpected error while serving ``source``: one aggregated WARNING line naming the
    exception; the traceback only at DEBUG (a flood of bad input cannot fill the log)."""
    refused(logger, source, f"{what}: {type(exc).__name__}: {str(exc)[:120]}", logging.WARNING)
    logger.debug("%s", what, exc_info=exc)


def flush() -> None:
    for source, reason, count in _rates.flush(time.monotonic()):
        logger = _loggers.pop((source, reason), log)
        logger.info("%s from %s: %d more in the last %d s", reason, source, count, INTERVAL)


async def flush_task() -> None:
    while True:
        await asyncio.sleep(INTERVAL / 4)
        flush()


_CONNECTION_ERRORS = (ConnectionError, TimeoutError, ssl.SSLError, OSError)


def _handler(loop: asyncio.AbstractEventLoop, context: dict) -> None:
    exc = context.get("exception")
    if isinstance(exc, _CONNECTION_ERRORS):
        what = str(context.get("message") or "connection error").split("\n", 1)[0][:120]
        refused(log, "event loop", f"{what}: {type(exc).__name__}: {exc}"[:200])
        return
    loop.default_exception_handler(context)


def install_exception_handler(loop: asyncio.AbstractEventLoop) -> None:
    loop.set_exception_handler(_handler)


def quiet_sql_library() -> None:
    logging.getLogger("aiosqlite").setLevel(logging.WARNING)
