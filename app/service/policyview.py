"""The service's view of the active policy.

``AllowAll`` is what a tailnet without a policy gets (everyone sees everyone, allow-all
filter). ``compile_view`` wraps app.core.policy once a policy source is set.
"""

from __future__ import annotations

import functools
from typing import Any, Protocol

from app.core.map.builder import ALLOW_ALL_FILTER
from app.core.model import Node, User
from app.core.routes import EXIT_ROUTES

_EMPTY: frozenset[int] = frozenset()


class PolicyView(Protocol):
    def peers(self, node_id: int) -> set[int] | frozenset[int] | None: ...
    def peer_view(self, node_id: int) -> tuple[frozenset[int] | None, frozenset[int]]: ...
    def filter_rules(self, node_id: int) -> list[dict[str, Any]]: ...
    def ssh_policy(self, node_id: int) -> dict[str, Any] | None: ...
    def cap_map(self, node_id: int) -> dict[str, Any]: ...
    def auto_approved_routes(self, node: Node) -> set[str]: ...
    def node_can_have_tag(self, node: Node, tag: str) -> bool: ...
    def routes_for(self, viewer_id: int, peer_id: int, offered: list[str]) -> list[str]: ...
    def ssh_check_period(self, src_id: int, dst_id: int) -> float | None: ...


class AllowAll:
    def ssh_check_period(self, src_id: int, dst_id: int) -> None:
        return None

    def routes_for(self, viewer_id: int, peer_id: int, offered: list[str]) -> list[str]:
        return offered

    def peers(self, node_id: int) -> None:
        return None

    def peer_view(self, node_id: int) -> tuple[None, frozenset[int]]:
        return None, _EMPTY

    def filter_rules(self, node_id: int) -> list[dict[str, Any]]:
        return ALLOW_ALL_FILTER

    def ssh_policy(self, node_id: int) -> None:
        return None

    def cap_map(self, node_id: int) -> dict[str, Any]:
        return {}

    def auto_approved_routes(self, node: Node) -> set[str]:
        return set()

    def node_can_have_tag(self, node: Node, tag: str) -> bool:
        return False


class CompiledView:
    """A compiled policy. A node the compilation does not know (a recompile after it joined
    failed, say) gets nothing: no peers, a deny-all filter; never an exception in a map stream."""

    def __init__(self, compiled: Any) -> None:
        self.compiled = compiled

    @property
    def warnings(self) -> tuple[str, ...]:
        """Old-style spellings the policy was read with (bare user names), to log."""
        return getattr(self.compiled.policy, "warnings", ())

    def peers(self, node_id: int) -> frozenset[int]:
        try:
            return self.compiled.peers(node_id)
        except KeyError:
            return frozenset()

    def peer_view(self, node_id: int) -> tuple[frozenset[int], frozenset[int]]:
        """(base shared by the node's visibility class, the node's own extra peers)."""
        try:
            return self.compiled.peer_view(node_id)
        except KeyError:
            return _EMPTY, _EMPTY

    def filter_rules(self, node_id: int) -> list[dict[str, Any]]:
        try:
            return self.compiled.filter_rules(node_id)
        except KeyError:
            return []

    def ssh_policy(self, node_id: int) -> dict[str, Any] | None:
        try:
            return self.compiled.ssh_policy(node_id)
        except KeyError:
            return None

    def cap_map(self, node_id: int) -> dict[str, Any]:
        try:
            return self.compiled.cap_map(node_id)
        except KeyError:
            return {}

    def auto_approved_routes(self, node: Node) -> set[str]:
        try:
            return set(self.compiled.auto_approved_routes(node))
        except KeyError:
            return set()

    def node_can_have_tag(self, node: Node, tag: str) -> bool:
        try:
            return self.compiled.node_can_have_tag(node, tag)
        except KeyError:
            return False

    def ssh_check_period(self, src_id: int, dst_id: int) -> float | None:
        try:
            return self.compiled.ssh_check_period(src_id, dst_id)
        except KeyError:
            return None

    def routes_for(self, viewer_id: int, peer_id: int, offered: list[str]) -> list[str]:
        """The subset of a peer's offered routes the viewer may use under the policy."""
        if not offered:
            return offered
        primaries = [r for r in offered if r not in EXIT_ROUTES]
        try:
            allowed = set(self.compiled.allowed_ips_for_peer(viewer_id, peer_id, primaries))
        except KeyError:
            return []
        return [r for r in offered if r in allowed]


def compile_view(source: str | None, users: list[User], nodes: list[Node], server_url: str,
                 *, run_tests: bool = True, previous: PolicyView | None = None) -> PolicyView:
    """Parse and compile ``source`` (None = no policy). Raises app.core.policy.PolicyError.

    The policy's own ``tests`` run when a policy is set or reloaded (``run_tests``), not on
    every recompilation after a node or user change. ``previous`` is the view this one will
    replace: what is still valid in it is reused (app.core.policy.compile_policy).
    """
    if source is None:
        return AllowAll()
    from app.core.policy import compile_policy

    prev = previous.compiled if isinstance(previous, CompiledView) else None
    return CompiledView(compile_policy(_parsed(source), users, nodes, server_url=server_url, run_tests=run_tests,
                                       previous=prev))


def still_current(view: PolicyView, users: list[User], nodes: list[Node]) -> bool:
    """Whether ``view`` was compiled against exactly these user and node records (records are
    immutable: the same objects in the same order mean nothing moved since)."""
    if not isinstance(view, CompiledView):
        return False
    from app.core.policy.tailnet import Tailnet

    tailnet = view.compiled.tailnet
    return Tailnet.reuse(tailnet, users, nodes) is tailnet


@functools.lru_cache(maxsize=4)
def _parsed(source: str) -> Any:
    """Parsed policies are immutable: recompiling after a node or user change reuses the parse."""
    from app.core.policy import parse_policy

    return parse_policy(source)
