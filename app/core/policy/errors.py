"""``PolicyError``: every problem found in a policy, each with its path into the document."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

__all__ = ["PolicyError", "Problem"]


class Problem(NamedTuple):
    """One problem: a (path, message) pair."""

    path: str       # e.g. 'acls[2].dst[0]' or 'groups["group:eng"]'; '' for the whole document
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class PolicyError(ValueError):
    """The policy was rejected. ``problems`` lists (path, message) pairs; ``str()`` shows one a line."""

    def __init__(self, problems: Iterable[Problem | tuple[str, str]]) -> None:
        self.problems: list[Problem] = [p if isinstance(p, Problem) else Problem(*p) for p in problems]
        super().__init__("\n".join(str(p) for p in self.problems) or "invalid policy")

    @property
    def pairs(self) -> list[tuple[str, str]]:
        """The problems as plain tuples."""
        return [tuple(p) for p in self.problems]  # type: ignore[misc]
