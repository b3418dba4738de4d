"""Debian's nginx as the reverse proxy in front of our server, with headscale's documented recipe
(docs/ref/integration/reverse-proxy.md): TLS at nginx, Upgrade/Connection passed through,
buffering off, X-Real-IP and X-Forwarded-For set. Runs with every path inside the test's folder."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

CONF = """
user root;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 512; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/client_temp;
    proxy_temp_path {d}/proxy_temp;
    fastcgi_temp_path {d}/fastcgi_temp;
    uwsgi_temp_path {d}/uwsgi_temp;
    scgi_temp_path {d}/scgi_temp;

    map $http_upgrade $connection_upgrade {{
        default      upgrade;
        ''           close;
    }}

    server {{
        listen {listen} ssl http2;
        server_name {name};

        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;

        location / {{
            proxy_pass http://{upstream};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $server_name;
            proxy_redirect http:// https://;
            proxy_buffering off;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            add_header Strict-Transport-Security "max-age=15552000; includeSubDomains" always;
        }}
    }}
}}
"""


class Nginx:
    def __init__(self, work: Path, *, listen: str, name: str, upstream: str, cert: Path, key: Path,
                 popen=None) -> None:
        self.dir = work / "nginx"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.conf = self.dir / "nginx.conf"
        self.conf.write_text(CONF.format(d=self.dir, listen=listen, name=name, upstream=upstream,
                                         cert=cert, key=key))
        self.popen = popen
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        args = ["nginx", "-c", str(self.conf), "-g", "daemon off;"]
        self.proc = self.popen(args, log=self.dir / "stdout.log")
        deadline = time.time() + 10
        while time.time() < deadline:
            if (self.dir / "nginx.pid").exists():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("nginx did not start: " + self.error_log()[-2000:])

    def error_log(self) -> str:
        p = self.dir / "error.log"
        return p.read_text() if p.exists() else ""

    def access_log(self) -> str:
        p = self.dir / "access.log"
        return p.read_text() if p.exists() else ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
