"""A tiny HTTP client for the REST API of an in-process server (blocking urllib in a thread, so
the server keeps running on the test's event loop)."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from typing import Any


class Api:
    def __init__(self, services, key: str | None = None) -> None:
        host, port = services.addresses["listen"]
        self.base = f"http://{host}:{port}"
        self.key = key

    def _call(self, method: str, path: str, body: Any, raw: bytes | None,
              headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.key:
            req.add_header("Authorization", f"Bearer {self.key}")
        for k, v in headers.items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=20) as r:
                return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
        except urllib.error.HTTPError as e:
            return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()

    async def raw(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
                  headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        return await asyncio.to_thread(self._call, method, path, body, raw, headers or {})

    async def call(self, method: str, path: str, body: Any = None, **kw) -> tuple[int, Any]:
        status, _, data = await self.raw(method, path, body, **kw)
        try:
            return status, json.loads(data) if data else None
        except ValueError:
            return status, data.decode("utf-8", "replace")

    async def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, doc = await self.call(method, path, body)
        assert status == 200, (method, path, status, doc)
        return doc


async def api_with_key(services) -> Api:
    from datetime import timedelta

    _, full = await services.state.create_api_key(services.state.now() + timedelta(days=1))
    return Api(services, full)
