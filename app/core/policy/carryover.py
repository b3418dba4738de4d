"""What a compilation takes over from the one it replaces (the server recompiles after every
node, user or policy change).

Only result objects cross over, never the previous ``CompiledPolicy`` itself (so compilations
do not chain in memory):

- shared sets (peer classes, per-user autogroup:self extras) equal to a previous one are handed
  out as that object, so map sessions holding it see "unchanged" by identity;
- rule *tokens*: a global rule's content (SrcIPs, protocols, DstPorts entries) as one interned
  tuple, equal content = the same object across compilations;
- per-node filter *keys*: everything a node's packet filter is a function of, in tokens. A
  node whose key equals its previous key gets its previous filter list back without building
  it (O(the node's own entries), not O(its filter)); a node whose key moved is rebuilt, and
  still gets the previous list if the result is equal.
- wire ``DstPorts`` elements (pure functions of their key), within a bound.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .compile import CompiledPolicy

Key = tuple[Any, ...]


class CarryOver:
    def __init__(self, previous: CompiledPolicy | None, n_nodes: int) -> None:
        self.sets: dict[frozenset[int], frozenset[int]] = {}
        self.tokens: dict[Key, Key] = {}
        self.filters: dict[int, list[Any]] = {}
        self.keys: dict[int, Key | None] = {}
        self.self_keys: dict[int, Key | None] = {}
        self.universal_key: Key | None = None
        self.np_cache: dict[Any, Any] = {}
        if previous is None:
            return
        vis, nf = previous.visibility, previous.node_filters
        for s in (*vis.peer_sets.values(), *vis.own_sets.values()):
            self.sets.setdefault(s, s)
        for tok in nf.rule_tokens:
            if tok is not None:
                self.tokens.setdefault(tok, tok)
        self.filters = dict(nf.filters)
        self.keys = dict(nf.filter_keys)
        self.self_keys = dict(nf.self_keys)
        self.universal_key = nf.universal_key
        if len(nf.np_cache) <= 8 * n_nodes + 4096:
            self.np_cache = nf.np_cache

    def set(self, s: frozenset[int]) -> frozenset[int]:
        return self.sets.get(s, s)

    def token(self, content: Key) -> Key:
        return self.tokens.get(content, content)

    def same(self, new: Key | None, old: Key | None) -> Key | None:
        """``old`` when equal to ``new`` (so later comparisons are by identity), else ``new``."""
        return old if old is not None and new == old else new

    def filter(self, nid: int, key: Key | None) -> list[Any] | None:
        """The node's previous filter when its key has not moved."""
        if key is None:
            return None
        old = self.keys.get(nid)
        if old is not None and old == key:
            return self.filters.get(nid)
        return None

    def equal_filter(self, nid: int, built: list[Any]) -> list[Any]:
        """The previous list when equal to the freshly built one."""
        prev = self.filters.get(nid)
        return prev if prev is not None and prev is not built and prev == built else built
