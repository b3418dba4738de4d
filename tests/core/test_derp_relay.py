"""Relay state with in-memory clients (app/core/derp/relay.py): no sockets, injected time."""

import pytest
from nacl.public import PrivateKey

from app.core.derp import frames
from app.core.derp.frames import ClientInfo, FrameParser, FrameType, PeerGoneReason
from app.core.derp.relay import Close, ConnState, Relay, Send, Verify

SERVER_PRIV = bytes(range(1, 33))
MESH_KEY = b"\x42" * 32


def priv(n: int) -> bytes:
    return bytes([n]) * 32


def pub(n: int) -> bytes:
    return bytes(PrivateKey(priv(n)).public_key)


def disco(n: int = 0) -> bytes:
    return frames.DISCO_MAGIC + bytes(32) + bytes(24) + bytes([n]) * 10


class Net:
    """Drives a Relay the way the adapter does and records what each connection would receive."""

    def __init__(self, **kw) -> None:
        self.relay = Relay(SERVER_PRIV, **kw)
        self.now = 1000.0
        self.inbox: dict[int, list] = {}
        self.closed: dict[int, str] = {}
        self.verifies: list[Verify] = []

    def apply(self, actions) -> None:
        for a in actions:
            if isinstance(a, Send):
                assert a.conn not in self.closed, "sent to a closed connection"
                self.inbox.setdefault(a.conn, []).extend(FrameParser().receive_data(a.data))
            elif isinstance(a, Close):
                self.closed[a.conn] = a.reason
            else:
                self.verifies.append(a)

    def connect(self, **kw) -> int:
        conn, actions = self.relay.connect(self.now, **kw)
        self.apply(actions)
        return conn

    def feed(self, conn: int, data: bytes) -> None:
        self.apply(self.relay.receive_data(conn, data, self.now))

    def login(self, n: int, *, allow: bool = True, info: ClientInfo | None = None, **kw) -> int:
        conn = self.connect(**kw)
        [greeting] = self.take(conn)
        assert greeting.type is FrameType.SERVER_KEY
        self.feed(conn, frames.client_info(priv(n), frames.parse_server_key(greeting.payload), info))
        if self.verifies:
            check = self.verifies.pop()
            assert check.conn == conn and check.node_key == "nodekey:" + pub(n).hex()
            self.apply(self.relay.verified(conn, allow, self.now))
        if allow:
            [si] = self.take(conn)
            assert si.type is FrameType.SERVER_INFO
            assert frames.open_server_info(priv(n), self.relay.public_key, si.payload).version == 2
        return conn

    def take(self, conn: int) -> list:
        return self.inbox.pop(conn, [])

    def packets(self, conn: int) -> list[tuple[bytes, bytes]]:
        return [
            frames.parse_recv_packet(f.payload) for f in self.take(conn) if f.type is FrameType.RECV_PACKET
        ]

    def disconnect(self, conn: int) -> None:
        self.apply(self.relay.disconnect(conn))


def test_login_then_relay_both_ways():
    net = Net()
    a, b = net.login(1), net.login(2)
    net.feed(a, frames.send_packet(pub(2), b"ping from a"))
    assert net.packets(b) == [(pub(1), b"ping from a")]
    net.feed(b, frames.send_packet(pub(1), b"pong from b") + frames.send_packet(pub(1), b"again"))
    assert net.packets(a) == [(pub(2), b"pong from b"), (pub(2), b"again")]
    assert net.relay.stats.packets_relayed == 3 and net.relay.stats.clients == 2
    assert net.relay.stats.bytes_relayed == len(b"ping from a") + len(b"pong from b") + len(b"again")


def test_disco_packets_are_priority_and_data_packets_are_not():
    net = Net()
    a = net.login(1)
    net.login(2)
    sends = net.relay.receive_data(
        a, frames.send_packet(pub(2), disco()) + frames.send_packet(pub(2), b"wg"), net.now
    )
    assert [s.priority for s in sends] == [True, False]


def test_absent_disco_destination_gets_rate_limited_peer_gone_not_here():
    net = Net()
    a = net.login(1)
    for _ in range(5):
        net.feed(a, frames.send_packet(pub(9), disco()))
    gone = [frames.parse_peer_gone(f.payload) for f in net.take(a)]
    assert gone == [(pub(9), PeerGoneReason.NOT_HERE)] * 3  # burst of 3
    net.now += 1.0  # one token a second
    net.feed(a, frames.send_packet(pub(9), disco()))
    net.feed(a, frames.send_packet(pub(9), disco()))
    assert len(net.take(a)) == 1
    assert net.relay.stats.packets_dropped["unknown_dest"] == 7


def test_absent_non_disco_destination_is_dropped_silently():
    net = Net()
    a = net.login(1)
    net.feed(a, frames.send_packet(pub(9), b"wireguard bytes"))
    net.feed(a, frames.send_packet(pub(9), frames.DISCO_MAGIC + b"too short for disco"))
    assert net.take(a) == []
    assert net.relay.stats.packets_dropped["unknown_dest"] == 2


def test_leaving_client_triggers_peer_gone_for_its_receivers_only():
    net = Net()
    a, b, c = net.login(1), net.login(2), net.login(3)
    net.feed(a, frames.send_packet(pub(2), b"x"))
    net.take(b)
    net.disconnect(a)
    assert [frames.parse_peer_gone(f.payload) for f in net.take(b)] == [(pub(1), PeerGoneReason.DISCONNECTED)]
    assert net.take(c) == []  # never heard from a
    assert net.relay.stats.clients == 2 and not net.relay.is_connected(pub(1))
    # a receiver that left first does not get (or break) anything
    net.feed(b, frames.send_packet(pub(3), b"y"))
    net.disconnect(c)
    net.disconnect(b)
    assert net.relay.stats.clients == 0


def test_second_connection_with_same_key_becomes_active_and_first_takes_over_when_it_leaves():
    net = Net()
    a1, b = net.login(1), net.login(2)
    a2 = net.login(1)
    assert net.relay.active_conn(pub(1)) == a2 and net.relay.conns_of(pub(1)) == [a1, a2]
    assert net.relay.stats.clients == 3
    net.feed(b, frames.send_packet(pub(1), b"to newest"))
    assert net.packets(a2) == [(pub(2), b"to newest")] and net.packets(a1) == []
    net.disconnect(a2)
    assert net.take(b) == []  # key still here: no PeerGone
    net.feed(b, frames.send_packet(pub(1), b"to remaining"))
    assert net.packets(a1) == [(pub(2), b"to remaining")]
    net.feed(a1, frames.send_packet(pub(2), b"from a1"))
    assert net.packets(b) == [(pub(1), b"from a1")]
    net.disconnect(a1)
    assert [frames.parse_peer_gone(f.payload) for f in net.take(b)] == [(pub(1), PeerGoneReason.DISCONNECTED)]


def test_last_writer_is_active_among_duplicates():
    net = Net()
    a1, b = net.login(1), net.login(2)
    a2 = net.login(1)
    net.feed(a1, frames.ping(b"12345678"))  # any frame from a1 makes it active again
    assert net.relay.active_conn(pub(1)) == a1
    net.feed(b, frames.send_packet(pub(1), b"x"))
    assert net.packets(a1) == [(pub(2), b"x")]
    assert net.packets(a2) == []


def test_verify_refusal_closes_and_never_registers():
    net = Net()
    a = net.login(1, allow=False)
    assert net.closed == {a: "refused"}
    assert net.take(a) == []  # no ServerInfo
    assert not net.relay.is_connected(pub(1)) and net.relay.stats.clients == 0
    assert net.relay.stats.closed["refused"] == 1


def test_frames_sent_while_verifying_are_processed_after_admission():
    net = Net()
    b = net.login(2)
    a = net.connect()
    net.take(a)
    net.feed(a, frames.client_info(priv(1), net.relay.public_key) + frames.send_packet(pub(2), b"early"))
    assert net.relay.state_of(a) is ConnState.VERIFYING and net.take(b) == []
    [check] = net.verifies
    net.apply(net.relay.verified(check.conn, True, net.now))
    assert [f.type for f in net.take(a)] == [FrameType.SERVER_INFO]
    assert net.packets(b) == [(pub(1), b"early")]


def test_frame_before_client_info_closes_only_that_connection():
    net = Net()
    b = net.login(2)
    a = net.connect()
    net.feed(a, frames.send_packet(pub(2), b"sneaky"))
    assert net.closed == {a: "handshake"}
    assert net.take(b) == []
    net.feed(a, frames.send_packet(pub(2), b"after close"))  # ignored, no crash
    assert net.relay.state_of(a) is ConnState.CLOSED


def test_client_info_that_does_not_open_closes():
    net = Net()
    a = net.connect()
    wrong_server = pub(77)
    net.feed(a, frames.client_info(priv(1), wrong_server))
    assert net.closed == {a: "handshake"}
    assert net.verifies == []


def test_protocol_errors_close_one_connection_and_notify_receivers():
    net = Net()
    a, b = net.login(1), net.login(2)
    net.feed(a, frames.send_packet(pub(2), b"x"))
    net.take(b)
    net.feed(a, b"\x04" + (32 + (64 << 10) + 1).to_bytes(4, "big"))  # oversized SendPacket
    assert net.closed == {a: "frame_too_large"}
    assert [frames.parse_peer_gone(f.payload)[0] for f in net.take(b)] == [pub(1)]
    for bad in (
        frames.encode_frame(FrameType.SEND_PACKET, b"short"),
        frames.encode_frame(FrameType.NOTE_PREFERRED, b"\x01\x01"),
        frames.encode_frame(FrameType.PING, b"1234"),
        frames.encode_frame(FrameType.PING, bytes(1001)),
    ):
        c = net.login(3)
        net.feed(c, bad)
        assert net.closed[c] == "bad_frame"
    net.feed(b, frames.send_packet(pub(2), b"self"))  # b is unaffected
    assert net.packets(b) == [(pub(2), b"self")]


def test_unknown_and_client_irrelevant_frames_are_skipped():
    net = Net()
    a, b = net.login(1), net.login(2)
    junk = (
        b"\x0e\x00\x00\x00\x03abc"
        + frames.KEEP_ALIVE_FRAME
        + frames.pong(b"12345678")
        + frames.client_info(priv(1), net.relay.public_key)
    )
    net.feed(a, junk + frames.send_packet(pub(2), b"still works"))
    assert a not in net.closed
    assert net.packets(b) == [(pub(1), b"still works")]


def test_ping_gets_pong_with_same_bytes():
    net = Net()
    a = net.login(1)
    net.feed(a, frames.encode_frame(FrameType.PING, b"abcdefgh" + b"future"))
    assert net.take(a) == [frames.Frame(FrameType.PONG, b"abcdefgh")]


def test_note_preferred_counts_home_clients():
    net = Net()
    a, b = net.login(1), net.login(2)
    net.feed(a, frames.note_preferred(True))
    net.feed(a, frames.note_preferred(True))
    net.feed(b, frames.note_preferred(True))
    assert net.relay.stats.home_clients == 2
    net.feed(b, frames.note_preferred(False))
    net.disconnect(a)
    assert net.relay.stats.home_clients == 0


@pytest.mark.parametrize(
    "frame",
    [
        frames.WATCH_CONNS_FRAME,
        frames.close_peer(b"\x01" * 32),
        frames.forward_packet(b"\x01" * 32, b"\x02" * 32, b"x"),
    ],
)
def test_mesh_frames_without_mesh_key_close(frame):
    net = Net(mesh_key=MESH_KEY)
    a = net.login(1, info=ClientInfo(mesh_key=b"\x43" * 32))  # wrong key: a regular client
    net.feed(a, frame)
    assert net.closed == {a: "not_permitted"}


def test_watcher_gets_present_for_existing_and_new_clients_and_gone_when_they_leave():
    net = Net(mesh_key=MESH_KEY)
    a = net.login(1, remote_ip="192.0.2.1", remote_port=1111)
    w = net.login(50, info=ClientInfo(mesh_key=MESH_KEY))  # mesh peers skip verify
    assert net.verifies == []
    net.feed(w, frames.WATCH_CONNS_FRAME)
    present = [frames.parse_peer_present(f.payload) for f in net.take(w)]
    assert (pub(1), "192.0.2.1", 1111, 1) in present
    assert (pub(50), None, 0, 2) in present  # itself, flagged as mesh peer
    b = net.login(2, remote_ip="2001:db8::2", remote_port=2222, not_ideal=True)
    assert [frames.parse_peer_present(f.payload) for f in net.take(w)] == [(pub(2), "2001:db8::2", 2222, 8)]
    net.disconnect(b)
    assert [frames.parse_peer_gone(f.payload) for f in net.take(w)] == [(pub(2), PeerGoneReason.DISCONNECTED)]
    net.disconnect(w)
    net.disconnect(a)  # no watcher left: nothing sent to a closed connection
    assert net.relay.stats.clients == 0


def test_close_peer_and_forward_packet_from_mesh_peer():
    net = Net(mesh_key=MESH_KEY)
    a, b = net.login(1), net.login(2)
    m = net.login(50, info=ClientInfo(mesh_key=MESH_KEY))
    remote = b"\x77" * 32  # a client of another region server
    net.feed(m, frames.forward_packet(remote, pub(2), b"via mesh"))
    assert net.packets(b) == [(remote, b"via mesh")]
    net.feed(m, frames.forward_packet(remote, pub(9), disco()))
    assert [frames.parse_peer_gone(f.payload) for f in net.take(m)] == [(pub(9), PeerGoneReason.NOT_HERE)]
    net.feed(m, frames.close_peer(pub(1)))
    assert net.closed == {a: "close_peer"}
    assert not net.relay.is_connected(pub(1))


def test_close_key_closes_every_connection_of_a_node():
    net = Net()
    a1, a2, b = net.login(1), net.login(1), net.login(2)
    net.feed(a2, frames.send_packet(pub(2), b"x"))
    net.take(b)
    net.apply(net.relay.close_key(pub(1)))
    assert net.closed == {a1: "closed_by_server", a2: "closed_by_server"}
    assert [f.type for f in net.take(b)] == [FrameType.PEER_GONE]
    net.disconnect(a1)  # the adapter reports the sockets gone later: no-op
    net.disconnect(a2)
    assert net.relay.stats.clients == 1
