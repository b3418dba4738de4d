"""``GET /api/v1/node`` over ten thousand nodes: the same bytes as ``json.dumps`` of
``{"nodes": [node_json(...), ...]}`` (api_v1.py), built from per-node pieces cached by record.

A node's entry is a fixed sequence of fields. Most of them come from the node record alone;
records are immutable and replaced on every change (app.core.model), so the record object
itself is the cache key: a renamed, re-tagged, expired, re-routed or re-keyed node is a new
record and is serialised afresh. The fields that depend on something else are looked up on
every request and spliced in between the cached pieces:

| field          | depends on                                   | per request                  |
|----------------|----------------------------------------------|------------------------------|
| ``user``       | the owner's User record (or tagged-devices)  | one ``json.dumps`` per owner |
| ``preAuthKey`` | the key row (read from the store) + its user | cached by (row, user) value  |
| ``online``     | ``State.online``                             | ``true`` / ``false``         |
| ``subnetRoutes`` | served routes and primary elections        | only for routers             |

So a listing costs one string join over cached pieces plus a record-identity check per
node; a cold listing (after a restart) serialises each node once, with direct string
building instead of a dict per node. tests/server/test_api_nodes.py compares the bytes with
the straightforward serialisation, cold and after every kind of change.
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring_ascii as _esc  # what json.dumps uses (ensure_ascii)
from typing import Any

from app.core.model import Node, PreAuthKey, RegisterMethod
from app.core.routes import served_routes
from app.server.api_v1 import TAGGED_DEVICES, ZERO_DISCO_KEY, preauthkey_json, ts, user_json

Pieces = tuple[str, str, str, str, str]


def _str(value: Any) -> str:
    return _esc(value) if type(value) is str else json.dumps(value)


def _opt_time(dt: Any) -> str:
    text = ts(dt)
    return "null" if text is None else _esc(text)


def _strs(values: Any) -> str:
    values = list(values)
    try:
        return "[" + ", ".join(map(_esc, values)) + "]"
    except TypeError:   # not all str: whatever json.dumps makes of it
        return json.dumps(values)


def node_pieces(n: Node) -> Pieces:
    """The parts of ``node_json(n)`` that depend on the record only, in its key order; the
    owner, pre-auth key, online flag and subnet routes go between them."""
    head = (f'{{"id": {_esc(str(n.id))}, "machineKey": {_str(n.machine_key)}, "nodeKey": {_str(n.node_key)}, '
            f'"discoKey": {_str(n.disco_key or ZERO_DISCO_KEY)}, "ipAddresses": {_strs(n.addresses)}, '
            f'"name": {_str(n.hostname)}, "user": ')
    times = f', "lastSeen": {_opt_time(n.last_seen)}, "expiry": {_opt_time(n.expiry)}, "preAuthKey": '
    method = RegisterMethod.API_NAMES.get(n.register_method, "REGISTER_METHOD_UNSPECIFIED")
    names = (f', "createdAt": {_opt_time(n.created_at)}, "registerMethod": {_str(method)}, '
             f'"givenName": {_str(n.given_name)}, "online": ')
    routes = (f', "approvedRoutes": {_strs(n.approved_routes)}, '
              f'"availableRoutes": {_strs(sorted(set(n.routable_ips)))}, "subnetRoutes": ')
    return head, times, names, routes, f', "tags": {_strs(n.tags)}}}'


class NodeListCache:
    """Per-app cache of node pieces, keyed by node id and checked by record identity."""

    def __init__(self) -> None:
        self._entries: dict[int, tuple[Node, Pieces]] = {}
        self._keys: dict[tuple[PreAuthKey, Any], str] = {}    # (key row, its user) -> JSON

    def body(self, state: Any, nodes: list[Node], keys: dict[int, PreAuthKey], *, complete: bool) -> str:
        """The JSON text of ``{"nodes": [...]}``. ``complete``: ``nodes`` is every node, so
        entries of nodes no longer listed are dropped."""
        users = state.users
        online = state.online
        served = state.served
        owners: dict[int | None, str] = {}
        key_parts: dict[int, str] = {}
        key_cache: dict[tuple[PreAuthKey, Any], str] = {} if complete else self._keys
        tagged = json.dumps(user_json(TAGGED_DEVICES))
        fresh: dict[int, tuple[Node, Pieces]] = {} if complete else self._entries
        old = self._entries
        out: list[str] = []
        add = out.append
        for n in nodes:
            entry = old.get(n.id)
            if entry is not None and entry[0] is n:
                p = entry[1]
            else:
                p = node_pieces(n)
                entry = (n, p)
            fresh[n.id] = entry
            if n.tags:
                owner = tagged
            else:
                owner = owners.get(n.user_id)
                if owner is None:
                    u = users.get(n.user_id) if n.user_id is not None else None
                    owner = owners[n.user_id] = json.dumps(user_json(u))
            kid = n.auth_key_id
            if kid is None or kid not in keys:
                key = "null"
            else:
                key = key_parts.get(kid)
                if key is None:   # one key per node (single-use keys): cached by row value too
                    k = keys[kid]
                    ck = (k, users.get(k.user_id) if k.user_id is not None else None)
                    key = self._keys.get(ck) or json.dumps(preauthkey_json(k, users))
                    key_parts[kid] = key_cache[ck] = key
            if served.get(n.id):
                routes = _strs(state.routes_of(n.id))
            elif n.id in state.nodes:
                routes = "[]"
            else:   # deleted while the key list was read: node_json's fallback
                routes = _strs(served_routes(n))
            add("".join((p[0], owner, p[1], key, p[2], "true" if n.id in online else "false",
                         p[3], routes, p[4])))
        self._entries, self._keys = fresh, key_cache
        return '{"nodes": [' + ", ".join(out) + "]}"
