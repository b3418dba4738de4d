"""The service's view of the active policy.

``AllowAll`` is what a tailnet without a policy gets (everyone sees everyone, allow-all
filter). ``compile_view`` wraps app.core.policy once a policy source is set.
"""

from __future__ import annotations

from typing import Any, Protocol

from app.core.map.builder import ALLOW_ALL_FILTER
from app.core.model import Node, User


class PolicyView(Protocol):
    def peers(self, node_id: int) -> set[int] | frozenset[int] | None: ...
    def filter_rules(self, node_id: int) -> list[dict[str, Any]]: ...
    def ssh_policy(self, node_id: int) -> dict[str, Any] | None: ...
    def cap_map(self, node_id: int) -> dict[str, Any]: ...
    def auto_approved_routes(self, node: Node) -> set[str]: ...
    def node_can_have_tag(self, node: Node, tag: str) -> bool: ...
    def routes_for(self, viewer_id: int, peer_id: int, offered: list[str]) -> list[str]: ...


class AllowAll:
    def routes_for(self, viewer_id: int, peer_id: int, offered: list[str]) -> list[str]:
        return offered

    def peers(self, node_id: int) -> None:
        return None

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
    def __init__(self, compiled: Any) -> None:
        self.compiled = compiled

    def peers(self, node_id: int) -> frozenset[int]:
        return self.compiled.peers(node_id)

    def filter_rules(self, node_id: int) -> list[dict[str, Any]]:
        return self.compiled.filter_rules(node_id)

    def ssh_policy(self, node_id: int) -> dict[str, Any] | None:
        return self.compiled.ssh_policy(node_id)

    def cap_map(self, node_id: int) -> dict[str, Any]:
        return self.compiled.cap_map(node_id)

    def auto_approved_routes(self, node: Node) -> set[str]:
        return set(self.compiled.auto_approved_routes(node))

    def node_can_have_tag(self, node: Node, tag: str) -> bool:
        return self.compiled.node_can_have_tag(node, tag)

    def routes_for(self, viewer_id: int, peer_id: int, offered: list[str]) -> list[str]:
        """The subset of a peer's offered routes the viewer may use under the policy."""
        if not offered:
            return offered
        allowed = set(self.compiled.allowed_ips_for_peer(viewer_id, peer_id, offered))
        return [r for r in offered if r in allowed]


def compile_view(source: str | None, users: list[User], nodes: list[Node], server_url: str,
                 *, run_tests: bool = True) -> PolicyView:
    """Parse and compile ``source`` (None = no policy). Raises app.core.policy.PolicyError.

    The policy's own ``tests`` run when a policy is set or reloaded (``run_tests``), not on
    every recompilation after a node or user change.
    """
    if source is None:
        return AllowAll()
    from app.core.policy import compile_policy, parse_policy

    policy = parse_policy(source)
    return CompiledView(compile_policy(policy, users, nodes, server_url=server_url, run_tests=run_tests))
