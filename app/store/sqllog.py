"""SQL statement logging for ``database.debug``, without the values.

SQLite's trace hook hands over each statement with its parameters already bound
(``... WHERE prefix = 'hskey-...'``). Every literal (quoted text, blobs, numbers) is replaced
by ``?`` before the line is written, so key prefixes, bcrypt hashes and node keys never reach
the log; what remains is the statement's shape, which is what debugging needs. Without
``database.debug`` nothing is traced, and the SQL library's own logger (which prints
parameters at DEBUG) is held at WARNING by the server (app/server/logguard.py).
"""

from __future__ import annotations

import logging
import re

log = logging.getLogger("headscale.sql")

_LITERALS = re.compile(r"""[xX]'[0-9a-fA-F]*'|'(?:[^']|'')*'|(?<![\w.])-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?\b""")


def redact(sql: str) -> str:
    """The statement with every literal replaced by ``?`` and whitespace collapsed."""
    return " ".join(_LITERALS.sub("?", sql).split())


def trace(sql: str) -> None:
    """sqlite3 trace callback (runs on the database thread)."""
    log.debug("sql: %s", redact(sql))
