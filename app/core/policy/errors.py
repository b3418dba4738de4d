"""``PolicyError``: every problem found in a policy, each with its path into the document."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["PolicyError", "Problem"]


@dataclass(frozen=True, slots=True)
class Problem:
    path: str       # e.g. 'acls[2].dst[0]' or 'groups["group:eng"]'; '' for the whole document
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class PolicyError(ValueError):
    """The policy was rejected. ``problems`` lists (path, message) pairs; ``str()`` shows one a line."""

    def __init__(self, problems: Iterable[Problem | tuple[str, str]]) -> None:
        self.problems: tuple[Problem, ...] = tuple(
            p if isinstance(p, Problem) else Problem(*p) for p in problems)
        super().__init__("\n".join(str(p) for p in self.problems) or "invalid policy")

    @property
    def pairs(self) -> list[tuple[str, str]]:
        return [(p.path, p.message) for p in self.problems]
