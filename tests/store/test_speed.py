"""Start-up load of a large tailnet stays well under a second."""

from __future__ import annotations

import time

from app.core.model import Node

from .test_nodes import make_node

HOSTINFO = {
    "IPNVersion": "1.80.0-t0123456789-g0123456789", "FrontendLogID": "x" * 64, "BackendLogID": "y" * 64,
    "OS": "linux", "OSVersion": "6.1.0", "Distro": "debian", "DistroVersion": "12", "Hostname": "host",
    "Machine": "x86_64", "GoArch": "amd64", "GoVersion": "go1.23.4", "RoutableIPs": ["10.0.0.0/24"],
    "Services": [{"Proto": "peerapi4", "Port": 12345}, {"Proto": "peerapi6", "Port": 12345}],
    "NetInfo": {"MappingVariesByDestIP": False, "WorkingIPv6": True, "WorkingUDP": True, "PreferredDERP": 1,
                "DERPLatency": {"1-v4": 0.01, "2-v4": 0.02, "3-v4": 0.03}},
    "Userspace": False, "Cloud": "", "Location": None,
}


async def test_loading_5000_nodes_is_fast(db):
    user = await db.create_user("alice")
    nodes = [make_node(i, user.id, hostinfo=HOSTINFO, ipv4=f"100.64.{i // 250}.{i % 250 + 1}",
                       tags=()) for i in range(1, 5001)]
    # bulk insert through the public API would be 5000 transactions; one is enough here
    from app.store.nodes import _WRITE_COLUMNS, _values

    cols = ", ".join(_WRITE_COLUMNS)
    marks = ", ".join("?" for _ in _WRITE_COLUMNS)
    async with db._write() as conn:
        await conn.executemany(
            f"INSERT INTO nodes ({cols}, created_at, updated_at) VALUES ({marks}, ?, ?)",
            [(*_values(n), "2026-01-01 00:00:00+00:00", "2026-01-01 00:00:00+00:00") for n in nodes],
        )
    started = time.perf_counter()
    loaded = await db.list_nodes()
    elapsed = time.perf_counter() - started
    assert len(loaded) == 5000
    assert isinstance(loaded[0], Node) and loaded[-1].hostinfo["NetInfo"]["PreferredDERP"] == 1
    assert elapsed < 1.0, f"list_nodes took {elapsed:.3f}s"
    started = time.perf_counter()
    for n in loaded[:200]:
        await db.get_node_by_node_key(n.node_key)
    assert time.perf_counter() - started < 1.0
