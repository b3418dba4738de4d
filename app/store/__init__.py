"""Storage: the only code that speaks SQL. A headscale-0.29-compatible SQLite file.

Public surface: ``Database`` (db.py; queries in users.py, nodes.py, preauth_keys.py,
api_keys.py, policy.py), ``migrate_file`` (migrate.py) and the errors (errors.py).
"""

from .db import Database
from .errors import Conflict, Invalid, MigrationError, NotFound, StoreError
from .migrate import HEADSCALE_VERSION, MigrationReport, migrate_file

__all__ = [
    "HEADSCALE_VERSION",
    "Conflict",
    "Database",
    "Invalid",
    "MigrationError",
    "MigrationReport",
    "NotFound",
    "StoreError",
    "migrate_file",
]
