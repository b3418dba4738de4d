"""nodes table ↔ app.core.model.Node.

Columns as headscale writes them: keys and IPs in text form; ``endpoints``, ``tags`` and
``approved_routes`` as JSON string arrays; ``host_info`` as the Hostinfo JSON object (NULL
when unknown). ``Node.ephemeral`` is not a column: it comes from the pre-auth key the node
registered with (``auth_key_id``), as in headscale. ``deleted_at`` is never set (headscale
deletes node rows outright).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from app.core import jsonsafe
from app.core.hostinfo import (
    ip_version,
    normalise_endpoints,
    normalise_hostinfo,
    only_unknown,
    summary,
    valid_endpoint,
    valid_prefix,
)
from app.core.model import Node

from .base import IntegrityErrors, QueryBase, integrity_error
from .codec import (
    decode_list,
    encode_list,
    encode_object,
    format_time,
    parse_bool,
    parse_time,
)
from .errors import NotFound

log = logging.getLogger("headscale.store")

_SELECT = (
    "SELECT n.id, n.machine_key, n.node_key, n.disco_key, n.hostname, n.given_name, n.user_id,"
    " n.ipv4, n.ipv6, n.endpoints, n.host_info, n.register_method, n.tags, n.auth_key_id,"
    " n.expiry, n.last_seen, n.approved_routes, n.created_at, n.updated_at, k.ephemeral"
    " FROM nodes n LEFT JOIN pre_auth_keys k ON k.id = n.auth_key_id"
)

_WRITE_COLUMNS = (
    "machine_key", "node_key", "disco_key", "endpoints", "host_info", "ipv4", "ipv6", "hostname",
    "given_name", "user_id", "register_method", "tags", "auth_key_id", "last_seen", "expiry",
    "approved_routes",
)


def _stored_hostinfo(text: Any) -> Any:
    """The host_info column decoded with the same limits as client input (too deep: None)."""
    if not isinstance(text, (str, bytes)) or text in ("", "null", b"", b"null"):
        return None
    try:
        return jsonsafe.loads(text)
    except jsonsafe.JSONError:
        return None


def _stored_ip(text: Any, version: int, dropped: list[str]) -> str | None:
    """An ipv4/ipv6 column; an unparseable value is treated as unset (and reported)."""
    if not text:
        return None
    if ip_version(text) == version:
        return text
    dropped.append(f"ipv{version}")
    return None


def node_from_row(row: Any) -> Node:
    """A Node from a row; client-reported columns are normalised like fresh input, so a row an
    older version stored unchecked (``NetInfo: "x"``, ``RoutableIPs: [{}]``) cannot break maps."""
    dropped: list[str] = []
    hostinfo = normalise_hostinfo(_stored_hostinfo(row[10]), dropped)
    endpoints = decode_list(row[9])
    if not all(valid_endpoint(e) for e in endpoints):
        endpoints = tuple(normalise_endpoints(list(endpoints), dropped))
    ipv4, ipv6 = _stored_ip(row[7], 4, dropped), _stored_ip(row[8], 6, dropped)
    stored_routes = decode_list(row[16])
    approved = tuple(r for r in stored_routes if valid_prefix(r))
    if len(approved) != len(stored_routes):
        dropped.append("approved_routes")
    if dropped and not only_unknown(dropped):
        log.warning("node %s: ignoring unusable stored values: %s", row[0], summary(dropped))
    return Node(
        id=row[0],
        machine_key=row[1] or "",
        node_key=row[2] or "",
        disco_key=row[3] or "",
        hostname=row[4] or "",
        given_name=row[5] or "",
        user_id=row[6],
        ipv4=ipv4,
        ipv6=ipv6,
        endpoints=endpoints,
        hostinfo=hostinfo,
        register_method=row[11] or "",
        tags=decode_list(row[12]),
        auth_key_id=row[13],
        expiry=parse_time(row[14]),
        last_seen=parse_time(row[15]),
        approved_routes=approved,
        created_at=parse_time(row[17]),
        updated_at=parse_time(row[18]),
        ephemeral=parse_bool(row[19]),
    )


def _values(node: Node) -> tuple[Any, ...]:
    return (
        node.machine_key,
        node.node_key,
        node.disco_key,
        encode_list(node.endpoints),
        encode_object(node.hostinfo),
        node.ipv4,
        node.ipv6,
        node.hostname,
        node.given_name,
        node.user_id,
        node.register_method,
        encode_list(node.tags),
        node.auth_key_id,
        format_time(node.last_seen),
        format_time(node.expiry),
        encode_list(node.approved_routes),
    )


class NodeQueries(QueryBase):
    async def insert_node(self, node: Node) -> Node:
        """Insert ``node`` (its ``id`` is ignored) and return it as stored, with the new id.
        A missing user or pre-auth key raises NotFound."""
        return (await self.insert_nodes([node]))[0]

    async def insert_nodes(self, nodes: list[Node]) -> list[Node]:
        """Insert several nodes in ONE transaction (one commit, so one WAL sync): the group
        commit of a registration burst. All or none; returns them as stored, in order."""
        if not nodes:
            return []
        now = format_time(self._now())
        cols = ", ".join(_WRITE_COLUMNS)
        marks = ", ".join("?" for _ in _WRITE_COLUMNS)
        sql = f"INSERT INTO nodes ({cols}, created_at, updated_at) VALUES ({marks}, ?, ?)"
        ids: list[int] = []
        try:
            async with self._write() as conn:
                for node in nodes:
                    created = format_time(node.created_at) if node.created_at else now
                    cur = await conn.execute(sql, (*_values(node), created, now))
                    ids.append(int(cur.lastrowid or 0))
                rows = await conn.execute_fetchall(
                    f"{_SELECT} WHERE n.id IN ({', '.join('?' for _ in ids)})", tuple(ids))
        except IntegrityErrors as exc:
            raise integrity_error(exc, "node") from None
        by_id = {r[0]: r for r in rows}
        return [node_from_row(by_id[i]) for i in ids]

    async def update_node(self, node: Node) -> Node:
        """Write every field of ``node`` (by id; not created_at) and return the stored record."""
        sets = ", ".join(f"{c} = ?" for c in _WRITE_COLUMNS)
        try:
            async with self._write() as conn:
                cur = await conn.execute(
                    f"UPDATE nodes SET {sets}, updated_at = ? WHERE id = ?",
                    (*_values(node), format_time(self._now()), node.id),
                )
                if cur.rowcount == 0:
                    raise NotFound(f"node {node.id} not found", entity="node")
        except IntegrityErrors as exc:
            raise integrity_error(exc, "node") from None
        return await self.get_node(node.id)

    async def get_node(self, node_id: int) -> Node:
        row = await self._fetchone(f"{_SELECT} WHERE n.id = ?", (node_id,))
        if row is None:
            raise NotFound(f"node {node_id} not found", entity="node")
        return node_from_row(row)

    async def _node_by(self, column: str, value: str) -> Node:
        row = await self._fetchone(f"{_SELECT} WHERE n.{column} = ? ORDER BY n.id LIMIT 1", (value,))
        if row is None:
            raise NotFound("node not found", entity="node")
        return node_from_row(row)

    async def get_node_by_node_key(self, node_key: str) -> Node:
        return await self._node_by("node_key", node_key)

    async def get_node_by_machine_key(self, machine_key: str) -> Node:
        return await self._node_by("machine_key", machine_key)

    async def list_nodes(self, *, user_id: int | None = None) -> list[Node]:
        """All nodes by id, or those owned by ``user_id`` (tagged nodes have no owner)."""
        if user_id is None:
            rows = await self._fetchall(f"{_SELECT} ORDER BY n.id")
        else:
            rows = await self._fetchall(f"{_SELECT} WHERE n.user_id = ? ORDER BY n.id", (user_id,))
        return [node_from_row(r) for r in rows]

    async def list_nodes_by_user(self, user_id: int) -> list[Node]:
        return await self.list_nodes(user_id=user_id)

    async def delete_node(self, node_id: int) -> None:
        async with self._write() as conn:
            cur = await conn.execute("DELETE FROM nodes WHERE id = ?", (node_id,))
            if cur.rowcount == 0:
                raise NotFound(f"node {node_id} not found", entity="node")

    # Cheap single-column writes for the hot path (map polls). Like GORM's Update they also
    # stamp updated_at.

    async def _set_column(self, node_id: int, column: str, value: Any) -> None:
        async with self._write() as conn:
            cur = await conn.execute(
                f"UPDATE nodes SET {column} = ?, updated_at = ? WHERE id = ?",
                (value, format_time(self._now()), node_id),
            )
            if cur.rowcount == 0:
                raise NotFound(f"node {node_id} not found", entity="node")

    async def set_node_last_seen(self, node_id: int, last_seen: datetime | None) -> None:
        await self._set_column(node_id, "last_seen", format_time(last_seen))

    async def set_node_endpoints(self, node_id: int, endpoints: Iterable[str]) -> None:
        await self._set_column(node_id, "endpoints", encode_list(tuple(endpoints)))

    async def set_node_hostinfo(self, node_id: int, hostinfo: dict[str, Any] | None) -> None:
        await self._set_column(node_id, "host_info", encode_object(hostinfo))

    async def set_node_expiry(self, node_id: int, expiry: datetime | None) -> None:
        await self._set_column(node_id, "expiry", format_time(expiry))

    async def set_nodes_last_seen(self, seen: Mapping[int, datetime]) -> None:
        """Many last_seen values in one transaction (e.g. a periodic or shutdown flush);
        unknown ids are skipped."""
        if not seen:
            return
        now = format_time(self._now())
        async with self._write() as conn:
            await conn.executemany(
                "UPDATE nodes SET last_seen = ?, updated_at = ? WHERE id = ?",
                [(format_time(when), now, node_id) for node_id, when in seen.items()],
            )
