"""Aggregating repeated log lines: one line per (source, reason) per interval, with a count.

Anyone can open connections and be refused; logging each refusal would let them grow the log
without limit. ``RateLog.hit`` says whether to write a line now; the refusals in between are
counted, and the count is reported on the next line for that key (or by ``flush`` once the
interval has passed). The table is bounded: when it is full, new keys share one overflow key.

Sans-I/O: the caller passes the time (seconds, any monotonic clock) and does the logging.
"""

from __future__ import annotations

from dataclasses import dataclass

OVERFLOW = "(other sources)"


@dataclass(slots=True)
class _Entry:
    logged_at: float
    suppressed: int = 0


class RateLog:
    def __init__(self, interval: float = 60.0, max_keys: int = 4096) -> None:
        self.interval = interval
        self.max_keys = max_keys
        self._entries: dict[tuple[str, str], _Entry] = {}

    def hit(self, source: str, reason: str, now: float) -> int | None:
        """None: stay quiet (counted). Otherwise log now, mentioning the returned number of
        earlier occurrences that were not logged (0 for the first)."""
        key = (source, reason)
        entry = self._entries.get(key)
        if entry is None:
            if len(self._entries) >= self.max_keys:
                self._expire(now)
            if len(self._entries) >= self.max_keys:
                key = (OVERFLOW, reason)
                entry = self._entries.get(key)
            if entry is None:
                self._entries[key] = _Entry(now)
                return 0
        if now - entry.logged_at < self.interval:
            entry.suppressed += 1
            return None
        n = entry.suppressed
        entry.logged_at = now
        entry.suppressed = 0
        return n

    def flush(self, now: float) -> list[tuple[str, str, int]]:
        """(source, reason, count) for every key whose interval ended with unlogged hits;
        forgets keys that stayed quiet for a whole interval."""
        out = []
        for key, entry in list(self._entries.items()):
            if now - entry.logged_at < self.interval:
                continue
            if entry.suppressed:
                out.append((key[0], key[1], entry.suppressed))
                entry.suppressed = 0
                entry.logged_at = now
            else:
                del self._entries[key]
        return out

    def _expire(self, now: float) -> None:
        for key, entry in list(self._entries.items()):
            if now - entry.logged_at >= self.interval and not entry.suppressed:
                del self._entries[key]
