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
    ``policy=None`` means "no policy": the literal allow-all filter
    ``[{"SrcIPs":["*"],"DstPorts":[{"IP":"*",...}]}]`` and everyone sees everyone. A policy with
    neither ``acls`` nor ``grants`` (e.g. ``{}``) also allows everything, but as Tailscale's
    default grant ``* -> *:*``: SrcIPs are the tailnet ranges plus approved subnet routes (as the
    captures show). An ``acls``/``grants`` key, even empty, denies what it does not allow.
    ``server_url`` prefixes the SSH check-mode ``holdAndDelegate`` URL. With ``run_tests`` the
    policy's ``tests``/``sshTests`` run and a failure raises ``PolicyError`` (pass False when
    loading a stored policy at boot). Ambiguous user references (one token, several users)
    raise too. Compilation resolves aliases once; everything per node is lazy.

``check_policy(text, users, nodes, *, server_url="", tailnet_domains=None) -> Policy``
    Parse + compile + run tests: what ``policy set`` / file reload should call.

``CompiledPolicy`` (immutable; results are cached, treat returned objects as read-only;
unknown node ids raise ``KeyError``)
    ``filter_rules(node_id) -> list[dict]``     reduced PacketFilter rules (wire JSON, §5.1)
    ``ssh_policy(node_id) -> dict | None``      SSHPolicy wire JSON; None without ``ssh`` rules
    ``cap_map(node_id) -> dict``                CapMap additions for the self node (nodeAttrs,
                                                 randomize-client-port), values null
    ``peer_cap_map(peer_id) -> dict | None``    CapMap of this node as its peers see it
                                                 (``suggest-exit-node`` on approved exit nodes)
    ``peers(node_id) -> frozenset[int]``        nodes it may see (either side may reach the other)
    ``allowed_ips_for_peer(viewer_id, peer_id, primary_routes=None) -> list[str]``
                                                 the peer's addresses plus the subnet/exit routes
                                                 the viewer may use; ``primary_routes`` = routes the
                                                 peer is HA primary for (default: all it serves)
    ``node_can_have_tag(node, tag) -> bool``    tagOwners check for requested tags
    ``auto_approved_routes(node) -> set[str]``  advertised routes that autoApprovers approve
    ``node_can_approve_route(node, route) -> bool``
    ``node_digest(node_id) -> str``             hash of all of the above for one node; compare the
                                                 digests of two compilations to skip no-op updates
    ``node_digests(node_id) -> dict[str, str]`` the same per part: filter, ssh, caps, peers
    ``ssh_check_period(src_id, dst_id) -> float | None``  seconds a check-mode approval lasts

Module map: hujson (HuJSON reader), model (typed policy), parse (shape + reference checks),
ports (ports, protocols, durations), aliases (alias syntax and resolution), tailnet (user/node
indexes), ipset (address interval sets and their spellings), compile (``CompiledPolicy``: builds
the stages in order, SSH, caps, digests) and its stages: resolver (aliases against the tailnet),
grants (policy to rules), ruleindex (rules by the nodes that keep them), nodefilter (per-node
filters), visibility (peers); rule (their shared types), carryover (results lent by the previous
compilation), filter (wire helpers), ssh (SSH policy), routes (routes and tags), tests
(tests/sshTests).
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
