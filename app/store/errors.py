"""Domain-level storage errors. No HTTP here: the server maps them to statuses in one place."""

from __future__ import annotations


class StoreError(Exception):
    """Base class of every error the store raises on purpose."""

    kind = "store"

    def __init__(self, message: str, *, entity: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.entity = entity  # "user", "node", "pre_auth_key", "api_key", "policy", "database"


class NotFound(StoreError):
    """The record asked for does not exist (or a reference points at a missing record)."""

    kind = "not_found"


class Conflict(StoreError):
    """The change collides with existing state: a unique value taken, a key already used,
    a user that still owns nodes."""

    kind = "conflict"


class Invalid(StoreError):
    """The input (or the database file) is not acceptable: a bad user name, a malformed key,
    a database from an unsupported headscale version, a failed migration."""

    kind = "invalid"


class MigrationError(Invalid):
    """Bringing a database file forward failed; the file was left unchanged."""

    kind = "migration"
