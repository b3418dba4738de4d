"""Fuzz targets: every parser that reads untrusted bytes, one function each.

A target takes the fuzzer's bytes and may raise only the errors its parser documents for bad
input (``EXPECTED``); anything else (IndexError, RecursionError, UnicodeError, a 500 in a
server) is a finding. The same functions replay the seed corpus and the regression inputs in
``make test`` (tests/fuzz/), so a fixed crash stays fixed.

Targets import the code under test lazily (inside ``setup``), so that the runner can import
it under atheris' coverage instrumentation.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Target:
    name: str
    what: str
    setup: Callable[[], Callable[[bytes], None]]  # returns one_input(data)
    expected: tuple[type[BaseException], ...] = ()
    state: dict = field(default_factory=dict)


TARGETS: dict[str, Target] = {}


def target(name: str, what: str):
    def wrap(fn: Callable[[], tuple[Callable[[bytes], None], tuple]]) -> Callable:
        def setup() -> Callable[[bytes], None]:
            one_input, expected = fn()
            TARGETS[name].expected = expected
            return one_input

        TARGETS[name] = Target(name, what, setup)
        return fn

    return wrap


def _key(byte: int) -> bytes:
    """A fixed X25519 private key (deterministic targets replay the same way)."""
    return bytes([byte]) * 31 + b"\x40"


@target("noise_handshake", "TS2021 initiation (header + Noise IK msg 1) at the responder")
def _noise_handshake():
    from app.core.noise.errors import NoiseError
    from app.core.noise.handshake import Responder

    responder = Responder(_key(1))
    eph = _key(2)

    def one_input(data: bytes) -> None:
        responder.respond(data, eph)

    return one_input, (NoiseError,)


@target("noise_transport", "Noise transport records (framing + AEAD) in arbitrary chunks")
def _noise_transport():
    from app.core.noise.errors import NoiseError
    from app.core.noise.transport import NoiseTransport

    key = bytes(range(32))

    def one_input(data: bytes) -> None:
        # a valid record first (so the decrypt path and nonce accounting run), then the bytes
        sender = NoiseTransport(key, key)
        t = NoiseTransport(key, key)
        t.receive_data(sender.encrypt(b"hello"))
        cut = data[0] if data else 0
        t.receive_data(data[1:1 + cut])
        t.receive_data(data[1 + cut:])

    return one_input, (NoiseError,)


@target("noise_early", "early-payload block a client peeks before HTTP/2")
def _noise_early():
    from app.core.noise.early import split_early_payload
    from app.core.noise.errors import NoiseError

    def one_input(data: bytes) -> None:
        split_early_payload(data)

    return one_input, (NoiseError,)


@target("derp_frames", "DERP frame stream and every frame payload parser")
def _derp_frames():
    from app.core.derp import frames as f
    from app.core.derp.errors import DerpError

    parsers = [f.parse_server_key, f.parse_send_packet, f.parse_recv_packet, f.parse_forward_packet,
               f.parse_peer_gone, f.parse_peer_present, f.parse_ping, f.parse_note_preferred,
               f.parse_restarting]

    def one_input(data: bytes) -> None:
        parser = f.FrameParser(f.SERVER_LIMITS)
        for frame in parser.receive_data(data):
            for parse in parsers:
                try:
                    parse(frame.payload)
                except DerpError:
                    pass
        for parse in parsers:
            try:
                parse(data)
            except DerpError:
                pass

    return one_input, (DerpError,)


@target("derp_client_info", "the JSON a DERP client seals into ClientInfo (box opened)")
def _derp_client_info():
    from app.core.derp import frames as f
    from app.core.derp.errors import DerpError

    server, client = _key(3), _key(4)
    server_pub = f.public_key_of(server)
    nonce = bytes(24)

    def one_input(data: bytes) -> None:
        payload = f.public_key_of(client) + f.seal(client, server_pub, data, nonce)
        f.open_client_info(server, payload)

    return one_input, (DerpError,)


@target("derp_relay", "relay state machine: two admitted clients, fuzzed frames from one")
def _derp_relay():
    from app.core.derp import frames as f
    from app.core.derp.relay import Relay, Verify

    server = _key(5)

    def admit(relay: Relay, priv: bytes) -> int:
        conn, _ = relay.connect(0.0, remote_ip="127.0.0.1")
        for action in relay.receive_data(conn, f.client_info(priv, relay.public_key), 0.0):
            if isinstance(action, Verify):
                relay.verified(conn, True, 0.0)
        return conn

    def one_input(data: bytes) -> None:
        relay = Relay(server)
        a = admit(relay, _key(6))
        admit(relay, _key(7))
        fresh, _ = relay.connect(0.0)
        half = len(data) // 2
        relay.receive_data(a, data[:half], 1.0)
        relay.receive_data(a, data[half:], 2.0)
        relay.receive_data(fresh, data, 3.0)
        relay.disconnect(a)

    return one_input, ()  # the relay turns every protocol error into a Close action


@target("stun", "STUN binding requests (and responses, as a client parses them)")
def _stun():
    from app.core import stun

    def one_input(data: bytes) -> None:
        stun.handle_datagram(data, "192.0.2.1", 41641)
        stun.handle_datagram(data, "2001:db8::1", 41641)
        stun.parse_binding_response(data)

    return one_input, ()


@target("control_requests", "RegisterRequest / MapRequest bodies as the control routes decode them")
def _control_requests():
    from app.core import jsonsafe, tailcfg

    def one_input(data: bytes) -> None:
        try:
            body = jsonsafe.loads(data, allow_nul=True)
        except jsonsafe.JSONError:
            return  # answered 400 by the routes (tests/server/test_hostile_control.py)
        for parse in (tailcfg.parse_map_request, tailcfg.parse_register_request):
            try:
                out = parse(body, [])
            except tailcfg.RequestError:
                continue
            json.dumps(out, default=str)  # what is kept must encode again (times are datetimes)

    return one_input, ()


@target("stored_node", "a node row as an older version may have stored it, then its peer entry in a map")
def _stored_node():
    from datetime import UTC, datetime

    from app.core.map.builder import MapSettings, tail_node
    from app.store.nodes import node_from_row

    settings = MapSettings(base_domain="tail.example", domain="hs.example.com")
    now = datetime(2026, 1, 1, tzinfo=UTC)

    def one_input(data: bytes) -> None:
        # columns separated by 0x00: endpoints, host_info, ipv4, ipv6, tags, approved_routes, expiry
        parts = [p.decode("utf-8", "replace") for p in  # sqlite3 hands out valid str only
                 (data.split(b"\x00") + [b""] * 7)[:7]]
        endpoints, host_info, ipv4, ipv6, tags, routes, expiry = parts
        row = (1, "mkey:" + "11" * 32, "nodekey:" + "12" * 32, "", "host", "host", 1, ipv4 or None,
               ipv6 or None, endpoints, host_info, "authkey", tags, None, expiry or None, None, routes,
               "2025-01-01 00:00:00+00:00", None, 0)
        node = node_from_row(row)
        for cap_map in (None, {}):
            entry = tail_node(node, settings, online=True, cap_map=cap_map, now=now, capver=130)
            json.dumps(entry)  # the map encoder's next step

    return one_input, ()


@target("hujson", "HuJSON policy text")
def _hujson():
    from app.core.policy.hujson import HuJSONError, loads

    def one_input(data: bytes) -> None:
        loads(data)

    return one_input, (HuJSONError,)


@target("policy", "policy parse + compile + tests against a small tailnet")
def _policy():
    from app.core.policy import PolicyError, check_policy

    users, nodes = _small_tailnet()

    def one_input(data: bytes) -> None:
        check_policy(data, users, nodes, server_url="https://hs.example.com")

    return one_input, (PolicyError,)


@target("config", "config.yaml as the server loads it")
def _config():
    import yaml

    from app.config.loader import build_config
    from app.config.model import ConfigError

    def one_input(data: bytes) -> None:
        try:
            doc = yaml.load(data, Loader=yaml.SafeLoader)
        except (yaml.YAMLError, ValueError, RecursionError):
            return
        if not isinstance(doc, dict):
            return
        build_config(doc, {}, validate=True)

    return one_input, (ConfigError,)


@target("h2", "HTTP/2 (prior knowledge) as served inside the Noise transport")
def _h2():
    import h2.exceptions

    from app.server.h2server import H2Server

    loop = asyncio.new_event_loop()
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

    async def handler(request, response) -> None:
        await response.simple(200, request.path.encode("utf-8", "replace")[:64])

    async def drain() -> None:
        return None

    async def serve(data: bytes) -> None:
        server = H2Server(lambda _b: None, drain, handler)
        await server.start()
        try:
            for i in range(0, len(data), 777):
                await server.receive(data[i:i + 777])
                await asyncio.sleep(0)  # let dispatched handlers run
        finally:
            server.close()
            await asyncio.sleep(0)

    def one_input(data: bytes) -> None:
        # the caller (app/server/ts2021.py) closes the connection on ProtocolError
        loop.run_until_complete(serve(preface + data))

    return one_input, (h2.exceptions.ProtocolError,)


def _small_tailnet():
    from datetime import UTC, datetime

    from app.core.model import Node, User

    now = datetime(2026, 1, 1, tzinfo=UTC)
    users = [User(id=1, name="alice", email="alice@example.com"), User(id=2, name="bob")]
    nodes = [
        Node(id=1, user_id=1, hostname="a", given_name="a", ipv4="100.64.0.1", ipv6="fd7a:115c:a1e0::1",
             machine_key="mkey:" + "11" * 32, node_key="nodekey:" + "12" * 32, created_at=now),
        Node(id=2, user_id=2, hostname="b", given_name="b", ipv4="100.64.0.2", ipv6="fd7a:115c:a1e0::2",
             machine_key="mkey:" + "21" * 32, node_key="nodekey:" + "22" * 32, created_at=now,
             tags=("tag:server",)),
    ]
    return users, nodes


@target("tls_client_hello_alpn", "ALPN list of a TLS ClientHello (TLS-ALPN-01 certificate choice)")
def _tls_client_hello_alpn():
    from app.core.acme import client_hello_alpn

    def one_input(data: bytes) -> None:
        out = client_hello_alpn(data)
        assert out is None or all(isinstance(n, str) for n in out)

    return one_input, ()


WS_OPENING = (b"GET /ts2021?X-Tailscale-Handshake=AAAA HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
              b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
              b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: tailscale-control-protocol\r\n\r\n")


@target("websocket_frames", "client frames on an accepted /ts2021 WebSocket (wsstream.WSReader)")
def _websocket_frames():
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection

    from app.server.wsstream import WSReader

    loop = asyncio.new_event_loop()

    class _Writer:
        def write(self, data: bytes) -> None:
            pass

    async def serve(data: bytes) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        ws.receive_data(WS_OPENING)
        list(ws.events())
        ws.send(AcceptConnection(subprotocol="tailscale-control-protocol"))
        stream = asyncio.StreamReader()
        for i in range(0, len(data), 501):
            stream.feed_data(data[i:i + 501])
        stream.feed_eof()
        reader = WSReader(stream, ws, _Writer(), "fuzz")
        while await reader.read(65536):
            pass

    def one_input(data: bytes) -> None:
        # every broken frame must end in a clean close (read() -> b""), never an exception
        loop.run_until_complete(serve(data))

    return one_input, ()
