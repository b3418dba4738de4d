"""``dns.extra_records_path``: the records file, watched; changes reach every connected node as
a DNS delta (Change(dns=True)) within a second or so, without a reconnect.

A file that cannot be read or parsed never replaces the records in use: the last good ones stay,
and one log line says why (again only when the file changes). At start, a bad file stops the
server with one line (serve.py), as a bad policy file does.
"""

from __future__ import annotations

import hashlib
import logging

from app.core.extrarecords import parse_records, with_records
from app.service.errors import Invalid
from app.service.state import State

log = logging.getLogger("headscale.dns")


class ExtraRecordsFile:
    def __init__(self, state: State, path: str) -> None:
        self.state = state
        self.path = path
        self.records: list[dict[str, str]] = []
        self._seen: bytes | None = None   # digest of the last content looked at (good or bad)
        self._failing = False

    def _read(self) -> str:
        with open(self.path, encoding="utf-8") as f:
            return f.read()

    def load(self) -> None:
        """At start: the file must be readable and valid."""
        try:
            text = self._read()
            records = parse_records(text)
        except OSError as exc:
            raise Invalid(f"dns.extra_records_path {self.path}: cannot be read ({exc.strerror})") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise Invalid(f"dns.extra_records_path {self.path}: {exc}") from None
        self._seen = hashlib.sha256(text.encode()).digest()
        self._apply(records)

    def poll(self) -> bool:
        """Re-read the file; True when new records were installed."""
        try:
            text = self._read()
        except (OSError, UnicodeDecodeError) as exc:
            if not self._failing:
                why = getattr(exc, "strerror", None) or str(exc)
                log.error("dns.extra_records_path %s cannot be read (%s); keeping the last good "
                          "%d record(s)", self.path, why, len(self.records))
                self._failing, self._seen = True, None
            return False
        digest = hashlib.sha256(text.encode()).digest()
        if digest == self._seen:
            return False
        self._seen = digest
        try:
            records = parse_records(text)
        except ValueError as exc:
            self._failing = True
            log.error("dns.extra_records_path %s is invalid, keeping the last good %d record(s): %s",
                      self.path, len(self.records), exc)
            return False
        if self._failing:
            log.info("dns.extra_records_path %s is valid again", self.path)
        self._failing = False
        if records == self.records:
            return False
        self._apply(records)
        log.info("dns.extra_records_path %s: %d record(s) in use", self.path, len(records))
        return True

    def _apply(self, records: list[dict[str, str]]) -> None:
        self.records = records
        self.state.set_dns_config(with_records(self.state.settings.dns_config, records))
