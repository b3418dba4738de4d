"""In-process server on 127.0.0.1:0, driven by our own protocol client (app.client)."""

from __future__ import annotations

import asyncio

import pytest

from app.client.control import ControlClient
from app.config import dev_config
from app.server.serve import build, start, stop


@pytest.fixture
async def server(tmp_path):
    cfg = dev_config(str(tmp_path), overrides={
        "listen_addr": "127.0.0.1:0",
        "metrics_listen_addr": "",
        "tuning.batch_change_delay": "20ms",
        "node.ephemeral.inactivity_timeout": "70s",
    })
    services = await build(cfg)
    await start(services)
    try:
        yield services
    finally:
        await stop(services)


async def new_client(services, **kw) -> ControlClient:
    host, port = services.addresses["listen"]
    c = ControlClient(host, port, **kw)
    await c.connect()
    return c


async def user_and_key(services, name="alice", **kw):
    st = services.state
    user = st.user_by_name(name) or await st.create_user(name)
    kw.setdefault("reusable", True)
    kw.setdefault("ephemeral", False)
    kw.setdefault("expiration", None)
    kw.setdefault("tags", [])
    _, full = await st.create_preauth_key(user.id, **kw)
    return user, full


class Stream:
    """A map stream read in the background, with helpers to wait for messages."""

    def __init__(self, client: ControlClient, **extra) -> None:
        self.client = client
        self.messages: list[dict] = []
        self.new = asyncio.Event()
        self.task = asyncio.create_task(self._run(extra))

    async def _run(self, extra) -> None:
        async for msg in self.client.map_stream(**extra):
            self.messages.append(msg)
            self.new.set()

    def mark(self) -> int:
        return len(self.messages)

    async def wait(self, pred, timeout: float = 5.0, after: int = 0) -> dict:
        async def loop():
            seen = after
            while True:
                for m in self.messages[seen:]:
                    if pred(m):
                        return m
                seen = len(self.messages)
                self.new.clear()
                await self.new.wait()

        return await asyncio.wait_for(loop(), timeout)

    async def close(self) -> None:
        self.task.cancel()
        try:
            await self.task
        except (asyncio.CancelledError, Exception):  # noqa: BLE001, S110 - the stream may end either way
            pass
