"""TLS on the main listener (with reload), DERP maps from derp.urls/derp.paths, name collisions."""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import yaml

from app.config import dev_config
from app.server.serve import build, load_derp_map, reload, start, stop
from tests.e2e.certs import make_ca_and_cert
from tests.server.conftest import new_client, user_and_key


async def peer_cert(addr, ca) -> bytes:
    ctx = ssl.create_default_context(cafile=str(ca))
    reader, writer = await asyncio.open_connection(*addr, ssl=ctx, server_hostname="127.0.0.1")
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    body = await reader.read()
    writer.close()
    assert body.startswith(b"HTTP/1.1 200")
    return der


async def test_tls_listener_and_certificate_reload(tmp_path):
    ca1, cert, key = make_ca_and_cert(tmp_path / "one", "127.0.0.1")
    cfg = dev_config(str(tmp_path), overrides={
        "listen_addr": "127.0.0.1:0", "metrics_listen_addr": "", "server_url": "https://127.0.0.1:8443",
        "tls_cert_path": str(cert), "tls_key_path": str(key)})
    services = await build(cfg)
    await start(services)
    try:
        addr = services.addresses["listen"]
        first = await peer_cert(addr, ca1)
        ca2, cert2, key2 = make_ca_and_cert(tmp_path / "two", "127.0.0.1")
        cert.write_bytes(cert2.read_bytes())
        key.write_bytes(key2.read_bytes())
        await reload(services)
        second = await peer_cert(addr, ca2)
        assert first != second
        # A broken certificate file on reload keeps the working one.
        cert.write_text("garbage")
        await reload(services)
        assert await peer_cert(addr, ca2) == second
    finally:
        await stop(services)


class _MapHandler(BaseHTTPRequestHandler):
    body = b""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *a):
        pass


@pytest.fixture
def derp_url():
    _MapHandler.body = json.dumps({"Regions": {"1": {"RegionID": 1, "RegionCode": "r1", "RegionName": "One",
                                                     "Nodes": [{"Name": "1a", "RegionID": 1, "HostName": "d1"}]},
                                               "999": {"RegionID": 999, "RegionCode": "theirs", "Nodes": []}}}).encode()
    httpd = HTTPServer(("127.0.0.1", 0), _MapHandler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/derpmap"
    httpd.shutdown()


def test_derp_map_from_urls_and_paths_with_embedded_region_winning(tmp_path, derp_url):
    path = tmp_path / "derp.yaml"
    path.write_text(yaml.safe_dump({"regions": {900: {"regionid": 900, "regioncode": "local", "nodes": [
        {"name": "900a", "regionid": 900, "hostname": "derp.local", "derpport": 443}]}}}))
    cfg = dev_config(str(tmp_path), overrides={
        "derp.urls": [derp_url], "derp.paths": [str(path)], "derp.server.enabled": True,
        "derp.server.stun_listen_addr": "127.0.0.1:3478", "server_url": "https://hs.example.com"})
    m = load_derp_map(cfg)
    assert sorted(m["Regions"], key=int) == ["1", "900", "999"]
    assert m["Regions"]["900"]["Nodes"][0]["HostName"] == "derp.local"
    assert m["Regions"]["999"]["RegionCode"] == "headscale"          # embedded wins on the same ID
    assert m["Regions"]["999"]["Nodes"][0]["HostName"] == "hs.example.com"
    bad = dev_config(str(tmp_path), overrides={"derp.urls": ["http://127.0.0.1:9/nothing"], "derp.paths": [str(path)]})
    assert list(load_derp_map(bad)["Regions"]) == ["900"]             # an unreachable URL is skipped


async def test_hostname_collisions_get_suffixes(server):
    _, key = await user_and_key(server)
    names = []
    for _ in range(3):
        c = await new_client(server)
        await c.register(key, hostinfo={"Hostname": "Web Server"})
    names = sorted(n.given_name for n in server.state.nodes.values())
    assert names == ["web-server", "web-server-1", "web-server-2"]
