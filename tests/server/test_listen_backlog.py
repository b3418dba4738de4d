"""Every node reconnecting at once after a restart must not overflow the accept queue.

While the event loop is busy (here: blocked on purpose), the kernel completes handshakes into
the listener's backlog. With asyncio's default of 100, connections past it had their SYNs
dropped and waited out TCP's 1 s / 3 s / 7 s retransmits.
"""

from __future__ import annotations

import select
import socket
import time

from app.server.edge import LISTEN_BACKLOG, Edge

CONNECTIONS = 400


async def _app(scope, receive, send):   # never reached: nothing is accepted during the test
    raise AssertionError("unexpected request")


async def test_a_burst_of_connections_fits_the_backlog():
    edge = Edge(_app, upgrades={})
    server = await edge.listen_tcp("127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    socks = []
    try:
        # The loop does not run while this block does: only the kernel's backlog takes them.
        for _ in range(CONNECTIONS):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            socks.append(s)
        pending = {s.fileno(): s for s in socks}
        connected = 0
        deadline = time.monotonic() + 0.8      # well before the first SYN retransmit (1 s)
        while pending and time.monotonic() < deadline:
            _, writable, _ = select.select([], list(pending), [], 0.05)
            for fd in writable:
                s = pending.pop(fd)
                connected += s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
        assert LISTEN_BACKLOG >= 4096
        assert connected == CONNECTIONS, f"{connected} of {CONNECTIONS} handshakes completed"
    finally:
        for s in socks:
            s.close()
        server.close()
