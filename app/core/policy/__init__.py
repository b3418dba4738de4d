"""Access-control policy engine: HuJSON policies compiled the way Tailscale's control plane does.

Public API
----------
``parse_policy(text, *, tailnet_domains=None) -> Policy``
    Parse HuJSON and validate it (``tailnet_domains``: email domains ``user:*@d`` and
    ``localpart:*@d`` may name; unchecked when None). Raises ``PolicyError``, whose ``problems`` are
    ``Problem(path, message)`` pairs (``str()`` lists them one per line), e.g.
    ``acls[0].src[1]: src=tag not found: "tag:db" (add it to tagOwners)``. Empty text is the
    empty policy ``{}`` (allow all).

``compile_policy(policy, users, nodes, *, server_url="", run_tests=True) -> CompiledPolicy``
    ``policy=None`` means "no policy": allow-all filter and everyone sees everyone. ``{}``
    behaves the same; a policy with an ``acls`` or ``grants`` key (even empty) denies what it
    does not allow. With ``run_tests`` the policy's ``tests``/``sshTests`` run and a failure
    raises ``PolicyError``. Ambiguous user references (one token, several users) also raise.
    Compilation resolves aliases once; everything per node is computed lazily and cached.

``check_policy(text, users, nodes, *, server_url="", tailnet_domains=None) -> Policy``
    Parse + compile + run tests: what ``policy set`` / file reload should call.

``CompiledPolicy`` (results are cached; treat returned objects as read-only)
    ``filter_rules(node_id) -> list[dict]``     reduced PacketFilter rules (wire JSON)
    ``ssh_policy(node_id) -> dict | None``      SSHPolicy wire JSON; None without ``ssh`` rules
    ``cap_map(node_id) -> dict``                CapMap additions (nodeAttrs, randomize-client-port)
    ``peer_cap_map(peer_id) -> dict | None``    caps peers see on this node (suggest-exit-node)
    ``peers(node_id) -> frozenset[int]``        nodes it may see (symmetric)
    ``allowed_ips_for_peer(viewer, peer, primary_routes=None) -> list[str]``
    ``node_can_have_tag(node, tag) -> bool``    tagOwners check for requested tags
    ``auto_approved_routes(node) -> set[str]``  advertised routes autoApprovers approve
    ``node_can_approve_route(node, route) -> bool``
    ``node_digest(node_id) -> str``             hash of all of the above for one node: compare
                                                 digests of two compilations to skip no-op updates
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from ..model import Node, User
from .compile import CompiledPolicy, compile_policy
from .errors import PolicyError, Problem
from .model import Policy
from .parse import parse_policy

__all__ = [
    "CompiledPolicy",
    "Policy",
    "PolicyError",
    "Problem",
    "check_policy",
    "compile_policy",
    "parse_policy",
]


def check_policy(text: str | bytes, users: Sequence[User], nodes: Sequence[Node], *,
                 server_url: str = "", tailnet_domains: Collection[str] | None = None) -> Policy:
    """Parse, compile and run the policy's tests; ``PolicyError`` on any problem."""
    policy = parse_policy(text, tailnet_domains=tailnet_domains)
    compile_policy(policy, users, nodes, server_url=server_url, run_tests=True)
    return policy
