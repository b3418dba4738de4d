"""Write the seed corpora under fuzz/corpus/: valid inputs made by our own encoders and real data.

    .venv/bin/python -m fuzz.seeds        # rewrites fuzz/corpus/<target>/seed-* (review the diff)

Seeds give the fuzzer well-formed starting points (a valid Noise initiation, a DERP session,
a real client's STUN request, policies captured from Tailscale's control plane), so mutation
explores past the first length check.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHARED = REPO.parent / "shared" / "testdata"


def _key(byte: int) -> bytes:
    return bytes([byte]) * 31 + b"\x40"


def noise_handshake() -> list[bytes]:
    from app.core.noise.handshake import Initiator
    from app.core.noise.symmetric import private_key, public_bytes

    server_pub = public_bytes(private_key(_key(1)))
    return [Initiator(_key(9), server_pub, 130, _key(10)).initiation(),
            Initiator(_key(9), server_pub, 1, _key(11)).initiation()]


def noise_transport() -> list[bytes]:
    from app.core.noise.transport import NoiseTransport

    key = bytes(range(32))
    t = NoiseTransport(key, key)
    t.encrypt(b"hello")  # the target's own first record uses nonce 0
    return [bytes([3]) + t.encrypt(b"PRI * HTTP/2.0") + t.encrypt(b"x" * 100), b"\x04\x00\x10" + bytes(16)]


def noise_early() -> list[bytes]:
    from app.core.noise.early import early_payload

    return [early_payload(bytes(range(32))) + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00", b"\xff\xff\xffTS\x00\x00\x00\x02{}"]


def derp_frames() -> list[bytes]:
    from app.core.derp import frames as f

    peer = bytes(range(32))
    return [
        f.send_packet(peer, b"packet") + f.ping(b"12345678") + f.note_preferred(True),
        f.forward_packet(peer, peer[::-1], b"\x00" * 40) + f.peer_gone(peer, f.PeerGoneReason(0)),
        f.peer_present(peer, "192.0.2.1", 41641, 0) + f.restarting(1000, 5000) + f.health("x"),
        f.server_key(peer) + f.close_peer(peer) + f.pong(b"abcdefgh"),
    ]


def derp_client_info() -> list[bytes]:
    return [b'{"version":2,"CanAckPings":true}', b'{"meshKey":"' + b"ab" * 32 + b'","IsProber":true,"AppName":"x"}',
            b'{"version":null}', b"[[[[1]]]]"]


def derp_relay() -> list[bytes]:
    from app.core.derp import frames as f

    b_pub = f.public_key_of(_key(7))
    disco = f.DISCO_MAGIC + bytes(32) + bytes(40)
    return [
        f.send_packet(b_pub, b"wireguard") + f.send_packet(b_pub, disco) + f.ping(b"12345678"),
        f.note_preferred(True) + f.send_packet(bytes(32), b"nobody") + f.close_peer(b_pub),
        bytes([f.FrameType.WATCH_CONNS]) + bytes(4),
    ]


def stun() -> list[bytes]:
    from app.core import stun as s

    out = [s.binding_request(bytes(range(12))), s.binding_request(bytes(12), software=None, with_fingerprint=False)]
    out += [bytes.fromhex(p.read_text().split()[0] if p.read_text().strip() else "")
            for p in sorted((REPO / "tests/vectors/stun").glob("*.hex"))]
    return out


def control_requests() -> list[bytes]:
    nk = "nodekey:" + "12" * 32
    dk = "discokey:" + "34" * 32
    base = {"Version": 130, "NodeKey": nk, "DiscoKey": dk, "Stream": True, "KeepAlive": True,
            "Endpoints": ["192.0.2.1:41641", "[2001:db8::1]:41641"],
            "Hostinfo": {"Hostname": "nodea", "OS": "linux", "NetInfo": {"PreferredDERP": 999},
                         "RoutableIPs": ["10.0.0.0/24"], "RequestTags": ["tag:x"],
                         "Services": [{"Proto": "tcp", "Port": 22}]}}
    register = {"Version": 130, "NodeKey": nk, "OldNodeKey": "", "Auth": {"AuthKey": "hskey-auth-x"},
                "Expiry": "0001-01-01T00:00:00Z", "Hostinfo": {"Hostname": "n"}, "Followup": ""}
    return [json.dumps(base).encode(), json.dumps({**base, "OmitPeers": True, "Stream": False}).encode(),
            json.dumps(register).encode()]


def stored_node() -> list[bytes]:
    hostinfo = json.dumps({"Hostname": "n", "OS": "linux", "NetInfo": {"PreferredDERP": 999},
                           "RoutableIPs": ["10.0.0.0/24", "0.0.0.0/0"], "RequestTags": ["tag:x"]})
    good = [json.dumps(["192.0.2.1:41641"]), hostinfo, "100.64.0.1", "fd7a:115c:a1e0::1", json.dumps(["tag:x"]),
            json.dumps(["10.0.0.0/24"]), "2030-01-01 00:00:00+00:00"]
    bad = ['["x", 5, {"a": 1}]', '{"NetInfo": "x", "RoutableIPs": [{"a": 1}], "Hostname": 5}', "999.1.1.1", "::zz",
           '"tag"', "[[[]]]", "not a time"]
    return ["\x00".join(good).encode(), "\x00".join(bad).encode()]


def _policies(limit: int = 40) -> list[bytes]:
    files = sorted((SHARED / "policy-golden").rglob("*.json"), key=lambda p: p.stat().st_size)[:limit]
    out = []
    for p in files:
        pol = json.loads(p.read_text()).get("policy")
        if pol:
            out.append((pol if isinstance(pol, str) else json.dumps(pol, indent=1)).encode())
    return out


def hujson() -> list[bytes]:
    return [b'{\n // comment\n "a": [1, 2,], /* block */ "b": "\\u00e9",\n}', *_policies(10)]


def policy() -> list[bytes]:
    return [b'{"acls":[{"action":"accept","src":["*"],"dst":["*:*"]}]}',
            (b'{"groups":{"group:x":["alice@"]},"tagOwners":{"tag:server":["group:x"]},'
             b'"acls":[{"action":"accept","src":["group:x"],"dst":["tag:server:22,80-90"]}],'
             b'"ssh":[{"action":"check","src":["alice@"],"dst":["tag:server"],"users":["root"]}],'
             b'"tests":[{"src":"alice@","accept":["tag:server:22"]}]}'),
            *_policies(40)]


def config() -> list[bytes]:
    docs = [{"server_url": "https://hs.example.com", "listen_addr": "127.0.0.1:8080",
             "prefixes": {"v4": "100.64.0.0/10", "v6": "fd7a:115c:a1e0::/48", "allocation": "random"},
             "dns": {"magic_dns": True, "base_domain": "tail.example", "nameservers": {"global": ["1.1.1.1"]}},
             "derp": {"server": {"enabled": True, "region_id": 999}},
             "policy": {"mode": "database"}, "log": {"level": "debug"}},
            {"ip_prefixes": ["100.64.0.0/10"], "db_type": "sqlite3", "db_path": "/tmp/x.sqlite",
             "dns_config": {"magic_dns": True, "base_domain": "example.com", "nameservers": ["1.1.1.1"]}}]
    return [yaml.safe_dump(d).encode() for d in docs]


def h2() -> list[bytes]:
    import h2.config
    import h2.connection

    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.send_headers(1, [(":method", "POST"), (":path", "/machine/map"), (":scheme", "http"),
                          (":authority", "x")])
    conn.send_data(1, b'{"Version":130}', end_stream=True)
    conn.send_headers(3, [(":method", "GET"), (":path", "/x"), (":scheme", "http"), (":authority", "x")],
                      end_stream=True)
    data = conn.data_to_send()
    return [data[24:]]  # the target sends the client preface itself


def tls_client_hello_alpn() -> list[bytes]:
    import ssl

    out = []
    for alpn in (["acme-tls/1"], ["h2", "http/1.1"], None):
        ctx = ssl.create_default_context()
        if alpn:
            ctx.set_alpn_protocols(alpn)
        bio = ssl.MemoryBIO()
        obj = ctx.wrap_bio(ssl.MemoryBIO(), bio, server_hostname="hs.example.com")
        try:
            obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        out.append(bio.read()[5:])   # the handshake message, record header off
    return out


def websocket_frames() -> list[bytes]:
    """Client frames (masked, RFC 6455): binary, text, ping then binary, close, an unmasked
    frame with a reserved opcode, a cut frame."""
    mask = b"\x01\x02\x03\x04"

    def frame(op: int, payload: bytes) -> bytes:
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        return bytes([0x80 | op, 0x80 | len(payload)]) + mask + masked

    return [frame(2, b"\x00\x01noise"), frame(1, b"text"), frame(9, b"ping") + frame(2, b"after"),
            frame(8, b"\x03\xe8bye"), b"\x83\x03abc", frame(2, b"a")[:3]]


SEEDS = {f.__name__: f for f in (noise_handshake, noise_transport, noise_early, derp_frames, derp_client_info,
                                  derp_relay, stun, control_requests, stored_node, hujson, policy, config, h2,
                                  tls_client_hello_alpn, websocket_frames)}


def main() -> None:
    for name, make in SEEDS.items():
        folder = HERE / "corpus" / name
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("seed-*"):
            old.unlink()
        for data in make():
            (folder / f"seed-{hashlib.sha1(data).hexdigest()[:12]}").write_bytes(data)
        print(f"{name}: {len(list(folder.iterdir()))} seeds")


if __name__ == "__main__":
    main()
