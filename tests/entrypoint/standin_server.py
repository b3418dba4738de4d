"""A stand-in for `headscale serve -c <config>` used to test the supervisor mechanics.

It reads the rendered config.yaml like the real server would (listen_addr, database.sqlite.path),
keeps an SQLite database in WAL mode (so Litestream replicates it), answers GET /health, inserts
a row on POST /write?value=..., and on SIGTERM inserts a `shutdown` row and exits 0.
If `<data dir>/standin-crash` exists at start, it exits 3 at once (a crash loop -> FATAL).
"""

from __future__ import annotations

import signal
import sqlite3
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import yaml


def main(argv: list[str]) -> int:
    if argv[:1] != ["serve"] or "-c" not in argv:
        print("stand-in: only `serve -c <config>` is supported", file=sys.stderr)
        return 2
    config = yaml.safe_load(Path(argv[argv.index("-c") + 1]).read_text())
    db_path = Path(config["database"]["sqlite"]["path"])
    if (db_path.parent / "standin-crash").exists():
        print("stand-in: crash requested", flush=True)
        return 3
    conn = sqlite3.connect(db_path, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA busy_timeout=5000")
    conn.execute("CREATE TABLE IF NOT EXISTS events(id INTEGER PRIMARY KEY, value TEXT)")
    lock = threading.Lock()

    def write(value: str) -> None:
        with lock:
            conn.execute("INSERT INTO events(value) VALUES (?)", (value,))

    write("started")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()
            self.wfile.write(b'{"status":"pass"}')

        def do_POST(self) -> None:
            query = parse_qs(urlsplit(self.path).query)
            write(query.get("value", ["?"])[0])
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    host, port = config["listen_addr"].rsplit(":", 1)
    httpd = ThreadingHTTPServer((host, int(port)), Handler)

    def on_term(signum, frame) -> None:
        threading.Thread(target=httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_term)
    print(f"stand-in: serving on {host}:{port}, db {db_path}", flush=True)
    httpd.serve_forever()
    write("shutdown")
    conn.close()
    print("stand-in: stopped", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
