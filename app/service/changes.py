"""Changes as data: what the next flush must deliver, merged per batching tick.

A Change never carries message bytes; each map session turns the merged Change into the
delta its node needs (or nothing), from the current tailnet state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Change:
    peers_changed: set[int] = field(default_factory=set)   # node record changed: resend whole entry
    peers_removed: set[int] = field(default_factory=set)   # node deleted
    patches: dict[int, dict[str, Any]] = field(default_factory=dict)  # PeerChange fields by node id
    online: dict[int, bool] = field(default_factory=dict)   # OnlineChange
    self_changed: set[int] = field(default_factory=set)     # resend the node's own Node
    policy: bool = False        # filters / visibility / SSH may differ for anyone
    derp_map: bool = False
    dns: bool = False
    full: set[int] = field(default_factory=set)             # sessions that need a complete map

    def merge(self, other: Change) -> None:
        self.peers_changed |= other.peers_changed
        self.peers_removed |= other.peers_removed
        for nid, fields in other.patches.items():
            self.patches.setdefault(nid, {}).update(fields)
        self.online.update(other.online)
        self.self_changed |= other.self_changed
        self.policy = self.policy or other.policy
        self.derp_map = self.derp_map or other.derp_map
        self.dns = self.dns or other.dns
        self.full |= other.full
        # A removed node needs no patch or entry any more.
        for nid in self.peers_removed:
            self.patches.pop(nid, None)
            self.online.pop(nid, None)
        self.peers_changed -= self.peers_removed

    def __bool__(self) -> bool:
        return bool(
            self.peers_changed or self.peers_removed or self.patches or self.online
            or self.self_changed or self.policy or self.derp_map or self.dns or self.full
        )
