"""DERP relay state as pure logic (PROTOCOL.md 6.3): bytes and ``now`` in, actions out.

The adapter owns sockets, timers and the verify hook; this module owns every protocol
decision. One ``Relay`` serves all connections of a server; each accepted socket is a
connection id. Connection state machine::

    state              input                          -> actions               / next state
    AWAIT_CLIENT_INFO  ClientInfo whose box opens     -> Verify                / VERIFYING
                       (mesh-key holders skip Verify, as if verified(True))
    AWAIT_CLIENT_INFO  any other frame, bad box/JSON  -> Close                 / CLOSED
    VERIFYING          more frames                    -> kept until the verdict
    VERIFYING          verified(True)                 -> ServerInfo, PeerPresent to watchers,
                                                         then the kept frames  / ACTIVE
    VERIFYING          verified(False)                -> Close                 / CLOSED
    ACTIVE             frames                         -> see _on_frame
    ACTIVE             protocol error                 -> PeerGone to others, Close / CLOSED
    any                disconnect() (socket gone)     -> PeerGone to others    / CLOSED

Several connections may hold the same key (a restarting client, a cloned key). As in
Tailscale's server ("last writer is active") the newest connection, or the one that most
recently sent a frame, receives the key's packets; the others stay open but idle. The key
leaves the server only when its last connection does: then every connection that received
packets from it, and every watcher, gets PeerGone(Disconnected).
"""

from __future__ import annotations

import hmac
from collections import Counter
from dataclasses import dataclass, field
from enum import Enum
from typing import NamedTuple

from app.core.keys import NODE_PUBLIC

from .errors import ClientRefused, DerpError, FrameError, HandshakeError, NotPermitted
from .frames import (
    DISCO_MAGIC,
    DISCO_MIN_LEN,
    FRAME_HEADER,
    KEY_LEN,
    MAX_PACKET_SIZE,
    SERVER_LIMITS,
    FrameParser,
    FrameType,
    PeerGoneReason,
    PeerPresentFlags,
    ServerInfo,
    open_client_info,
    parse_forward_packet,
    parse_note_preferred,
    parse_ping,
    peer_gone,
    peer_present,
    pong,
    public_key_of,
    server_info,
    server_key,
)

_RECV_HEADER = FRAME_HEADER.pack
_RECV = int(FrameType.RECV_PACKET)

PEER_GONE_PER_SECOND = 1.0  # NotHere replies to one sender: about one a second ...
PEER_GONE_BURST = 3  # ... with a small burst (Tailscale's server uses the same numbers)


class ConnState(Enum):
    AWAIT_CLIENT_INFO = "await-client-info"
    VERIFYING = "verifying"
    ACTIVE = "active"
    CLOSED = "closed"


# Actions are NamedTuples: one is built per relayed packet, so they must be cheap.
class Send(NamedTuple):
    """Queue ``data`` (one or more encoded frames) for connection ``conn``."""

    conn: int
    data: bytes
    priority: bool = False  # control frames and disco packets: dropped last


class Close(NamedTuple):
    """Close connection ``conn``; the relay has already forgotten it."""

    conn: int
    reason: str  # stable code (errors.*.reason)
    detail: str = ""


class Verify(NamedTuple):
    """Ask the admission hook about ``node_key``; answer with ``Relay.verified``."""

    conn: int
    node_key: str  # "nodekey:<64 hex>"
    source: str | None  # client IP, if known


Action = Send | Close | Verify


@dataclass(slots=True)
class RelayStats:
    connections: int = 0  # sockets accepted so far
    clients: int = 0  # connections currently past login
    home_clients: int = 0  # of those, how many said NotePreferred(1)
    packets_relayed: int = 0
    bytes_relayed: int = 0
    packets_forwarded_in: int = 0
    packets_dropped: Counter[str] = field(default_factory=Counter)  # by reason
    peer_gone_disconnected: int = 0
    peer_gone_not_here: int = 0
    pongs: int = 0
    closed: Counter[str] = field(default_factory=Counter)  # closes we decided, by reason


class _Conn:
    __slots__ = (
        "can_mesh",
        "id",
        "info",
        "key",
        "keyset",
        "not_ideal",
        "parser",
        "pending",
        "pg_time",
        "pg_tokens",
        "preferred",
        "remote_ip",
        "remote_port",
        "saw_src",
        "state",
        "watcher",
    )

    def __init__(
        self, conn_id: int, remote_ip: str | None, remote_port: int, not_ideal: bool, now: float
    ) -> None:
        self.id = conn_id
        self.state = ConnState.AWAIT_CLIENT_INFO
        self.parser = FrameParser(SERVER_LIMITS)
        self.remote_ip = remote_ip
        self.remote_port = remote_port
        self.not_ideal = not_ideal
        self.key = b""
        self.info = None
        self.can_mesh = False
        self.keyset: list[_Conn] = []  # all connections of this key; the last one is active
        self.pending: list = []  # frames received while VERIFYING
        self.saw_src: set[bytes] = set()  # keys whose packets we delivered to this connection
        self.preferred = False
        self.watcher = False
        self.pg_tokens = float(PEER_GONE_BURST)
        self.pg_time = now

    def present_flags(self) -> int:
        flags = 0
        if self.info is not None and self.info.is_prober:
            flags |= PeerPresentFlags.PROBER
        if self.can_mesh:
            flags |= PeerPresentFlags.MESH_PEER
        if self.not_ideal:
            flags |= PeerPresentFlags.NOT_IDEAL
        return flags or PeerPresentFlags.REGULAR


class Relay:
    """Routing state of one DERP server."""

    def __init__(
        self,
        private_key: bytes,
        *,
        mesh_key: bytes | None = None,
        peer_gone_per_second: float = PEER_GONE_PER_SECOND,
        peer_gone_burst: int = PEER_GONE_BURST,
    ) -> None:
        if len(private_key) != KEY_LEN:
            raise ValueError("the DERP private key has 32 bytes")
        self._private = bytes(private_key)
        self.public_key = public_key_of(self._private)
        self._mesh_key = mesh_key
        self._pg_rate = peer_gone_per_second
        self._pg_burst = float(peer_gone_burst)
        self._server_key_frame = server_key(self.public_key)
        self._conns: dict[int, _Conn] = {}
        self._keys: dict[bytes, list[_Conn]] = {}
        self._gone_watch: dict[bytes, set[int]] = {}  # src key -> conns that received from it
        self._watchers: set[int] = set()
        self._next_id = 1
        self.stats = RelayStats()

    # --- queries ------------------------------------------------------------------------

    def is_connected(self, key: bytes) -> bool:
        return key in self._keys

    def active_conn(self, key: bytes) -> int | None:
        ks = self._keys.get(key)
        return ks[-1].id if ks else None

    def conns_of(self, key: bytes) -> list[int]:
        return [c.id for c in self._keys.get(key, ())]

    def key_of(self, conn: int) -> bytes | None:
        c = self._conns.get(conn)
        return c.key or None if c else None

    def state_of(self, conn: int) -> ConnState:
        c = self._conns.get(conn)
        return c.state if c else ConnState.CLOSED

    def buffered_bytes(self, conn: int) -> int:
        c = self._conns.get(conn)
        return c.parser.buffered if c else 0

    # --- inputs -------------------------------------------------------------------------

    def connect(
        self, now: float, *, remote_ip: str | None = None, remote_port: int = 0, not_ideal: bool = False
    ) -> tuple[int, list[Action]]:
        """A socket was accepted (and upgraded): returns its id and the ServerKey to send."""
        conn_id = self._next_id
        self._next_id += 1
        self._conns[conn_id] = _Conn(conn_id, remote_ip, remote_port, not_ideal, now)
        self.stats.connections += 1
        return conn_id, [Send(conn_id, self._server_key_frame, True)]

    def receive_data(self, conn: int, data: bytes, now: float) -> list[Action]:
        c = self._conns.get(conn)
        if c is None:
            return []
        try:
            frames = c.parser.receive_data(data)
        except DerpError as e:
            return self._fail(c, e)
        if not frames:
            return []
        out: list[Action] = []
        self._feed(c, frames, now, out)
        return out

    def verified(self, conn: int, allowed: bool, now: float) -> list[Action]:
        """The admission verdict for a ``Verify`` action."""
        c = self._conns.get(conn)
        if c is None or c.state is not ConnState.VERIFYING:
            return []
        if not allowed:
            return self._fail(c, ClientRefused(f"{NODE_PUBLIC}{c.key.hex()} not admitted"))
        out = self._admit(c)
        pending, c.pending = c.pending, []
        self._feed(c, pending, now, out)
        return out

    def disconnect(self, conn: int) -> list[Action]:
        """The socket is gone (EOF, error, timeout, or after a Close): forget the connection."""
        c = self._conns.get(conn)
        return self._unregister(c) if c is not None else []

    def close_key(self, key: bytes, reason: str = "closed_by_server") -> list[Action]:
        """Disconnect every connection of ``key`` (node deleted or expired, or ClosePeer)."""
        out: list[Action] = []
        for c in list(self._keys.get(key, ())):
            out.extend(self._unregister(c))
            out.append(Close(c.id, reason))
            self.stats.closed[reason] += 1
        return out

    # --- internals ----------------------------------------------------------------------

    def _feed(self, c: _Conn, frames: list, now: float, out: list[Action]) -> None:
        try:
            for f in frames:
                state = c.state
                if state is ConnState.ACTIVE:
                    self._on_frame(c, f, now, out)
                elif state is ConnState.VERIFYING:
                    c.pending.append(f)
                elif state is ConnState.AWAIT_CLIENT_INFO:
                    self._on_client_info(c, f, out)
                else:
                    return  # closed while handling an earlier frame of this batch
        except DerpError as e:
            out.extend(self._fail(c, e))

    def _on_client_info(self, c: _Conn, f, out: list[Action]) -> None:
        if f.type is not FrameType.CLIENT_INFO:
            raise HandshakeError(f"first frame must be ClientInfo, got {f.type:#04x}")
        key, info = open_client_info(self._private, f.payload)
        c.key = key
        c.info = info
        mesh = self._mesh_key
        c.can_mesh = bool(mesh and info.mesh_key and hmac.compare_digest(mesh, info.mesh_key))
        c.state = ConnState.VERIFYING
        if c.can_mesh:  # trusted mesh peers are not tailnet nodes: nothing to verify
            out.extend(self._admit(c))
        else:
            out.append(Verify(c.id, NODE_PUBLIC + key.hex(), c.remote_ip))

    def _admit(self, c: _Conn) -> list[Action]:
        ks = self._keys.get(c.key)
        if ks is None:
            ks = self._keys[c.key] = []
        ks.append(c)  # newest connection becomes the active one
        c.keyset = ks
        c.state = ConnState.ACTIVE
        self.stats.clients += 1
        out: list[Action] = [Send(c.id, server_info(self._private, c.key, ServerInfo()), True)]
        if self._watchers:
            frame = peer_present(c.key, c.remote_ip, c.remote_port, c.present_flags())
            out.extend(Send(w, frame, True) for w in self._watchers)
        return out

    def _on_frame(self, c: _Conn, f, now: float, out: list[Action]) -> None:
        ks = c.keyset
        if len(ks) > 1 and ks[-1] is not c:  # last writer is active
            ks.remove(c)
            ks.append(c)
        t = f.type
        p = f.payload
        if t is FrameType.SEND_PACKET:
            if len(p) < KEY_LEN:
                raise FrameError(t, "short frame")
            self._route(c, c.key, p[:KEY_LEN], p, KEY_LEN, now, out, False)
        elif t is FrameType.PING:
            out.append(Send(c.id, pong(parse_ping(p)), True))
            self.stats.pongs += 1
        elif t is FrameType.NOTE_PREFERRED:
            preferred = parse_note_preferred(p)
            if preferred != c.preferred:
                c.preferred = preferred
                self.stats.home_clients += 1 if preferred else -1
        elif t is FrameType.FORWARD_PACKET:
            if not c.can_mesh:
                raise NotPermitted(t)
            src, dst, _ = parse_forward_packet(p)
            self.stats.packets_forwarded_in += 1
            self._route(c, src, dst, p, 2 * KEY_LEN, now, out, True)
        elif t is FrameType.WATCH_CONNS:
            if p:
                raise FrameError(t, "wrong size")
            if not c.can_mesh:
                raise NotPermitted(t)
            self._watch(c, out)
        elif t is FrameType.CLOSE_PEER:
            if len(p) != KEY_LEN:
                raise FrameError(t, "wrong size")
            if not c.can_mesh:
                raise NotPermitted(t)
            out.extend(self.close_key(p, "close_peer"))
        # Everything else (a second ClientInfo, server-to-client types, Pong) is ignored,
        # as Tailscale's server skips frames it does not act on.

    def _route(
        self,
        c: _Conn,
        src: bytes,
        dst: bytes,
        p: bytes,
        at: int,
        now: float,
        out: list[Action],
        forwarded: bool,
    ) -> None:
        """Deliver the packet ``p[at:]`` from ``src`` to ``dst``'s active connection."""
        size = len(p) - at
        disco = size >= DISCO_MIN_LEN and p.startswith(DISCO_MAGIC, at)
        ks = self._keys.get(dst)
        if ks:
            if size > MAX_PACKET_SIZE:
                raise FrameError(FrameType.SEND_PACKET, "packet too large")
            d = ks[-1]
            # RecvPacket: 32B source key | packet
            out.append(Send(d.id, b"".join((_RECV_HEADER(_RECV, KEY_LEN + size), src, p[at:])), disco))
            if src not in d.saw_src:
                self._note_sender(d, src)
            st = self.stats
            st.packets_relayed += 1
            st.bytes_relayed += size
            return
        self.stats.packets_dropped["unknown_dest_on_fwd" if forwarded else "unknown_dest"] += 1
        if disco and self._peer_gone_allowed(c, now):
            out.append(Send(c.id, peer_gone(dst, PeerGoneReason.NOT_HERE), True))
            self.stats.peer_gone_not_here += 1

    def _note_sender(self, d: _Conn, src: bytes) -> None:
        """Remember that ``d`` heard from ``src``: it gets PeerGone when ``src`` leaves."""
        d.saw_src.add(src)
        w = self._gone_watch.get(src)
        if w is None:
            w = self._gone_watch[src] = set()
        w.add(d.id)

    def _peer_gone_allowed(self, c: _Conn, now: float) -> bool:
        tokens = min(self._pg_burst, c.pg_tokens + (now - c.pg_time) * self._pg_rate)
        c.pg_time = now
        if tokens >= 1.0:
            c.pg_tokens = tokens - 1.0
            return True
        c.pg_tokens = tokens
        return False

    def _watch(self, c: _Conn, out: list[Action]) -> None:
        if c.key == self.public_key:
            return  # a mesh connection to ourselves
        c.watcher = True
        self._watchers.add(c.id)
        frames = [
            peer_present(key, a.remote_ip, a.remote_port, a.present_flags())
            for key, ks in self._keys.items()
            for a in ks[-1:]
        ]
        if frames:
            out.append(Send(c.id, b"".join(frames), True))

    def _fail(self, c: _Conn, err: DerpError) -> list[Action]:
        out = self._unregister(c)
        out.append(Close(c.id, err.reason, str(err)))
        self.stats.closed[err.reason] += 1
        return out

    def _unregister(self, c: _Conn) -> list[Action]:
        out: list[Action] = []
        was_active = c.state is ConnState.ACTIVE
        c.state = ConnState.CLOSED
        c.pending = []
        self._conns.pop(c.id, None)
        if not was_active:
            return out
        st = self.stats
        st.clients -= 1
        if c.preferred:
            st.home_clients -= 1
        if c.watcher:
            self._watchers.discard(c.id)
        for src in c.saw_src:
            w = self._gone_watch.get(src)
            if w is not None:
                w.discard(c.id)
                if not w:
                    del self._gone_watch[src]
        ks = c.keyset
        ks.remove(c)
        if ks:
            return out  # another connection of this key remains and is now active
        del self._keys[c.key]
        gone = peer_gone(c.key, PeerGoneReason.DISCONNECTED)
        for conn in sorted(self._gone_watch.pop(c.key, ())):
            out.append(Send(conn, gone, True))
            st.peer_gone_disconnected += 1
        out.extend(Send(w, gone, True) for w in sorted(self._watchers))
        return out
