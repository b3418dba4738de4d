"""Full maps far larger than one write (hundreds of KB: sealed through the shared buffer of
app/server/seal_buffer.py, or framed by the WebSocket adapter) reach several clients whole,
streamed and one-shot, over plain TCP and over WebSocket, all at once."""

from __future__ import annotations

import asyncio
import os

from app.client.control import ControlClient
from app.core.map.wire import FrameReader
from app.core.model import Node
from app.server.seal_buffer import SEAL_IN_PLACE
from tests.server.conftest import Stream, user_and_key

PEERS = 1500


async def test_large_full_maps_arrive_whole_on_every_path_at_once(server):
    st = server.state
    user, key = await user_and_key(server)
    async with st.lock:   # random keys: the map does not compress below a few hundred KB
        await st.create_nodes([Node(
            id=0, machine_key="mkey:" + os.urandom(32).hex(), node_key="nodekey:" + os.urandom(32).hex(),
            disco_key="discokey:" + os.urandom(32).hex(), hostname=f"peer-{i}", user_id=user.id,
            endpoints=(f"192.0.2.{i % 250}:41641",), hostinfo={"Hostname": f"peer-{i}"})
            for i in range(PEERS)])
    host, port = server.addresses["listen"]
    clients = []
    for i in range(6):
        c = ControlClient(host, port, websocket=i % 3 == 2)
        await c.connect()
        assert (await c.register(key, hostinfo={"Hostname": f"viewer-{i}"}))["MachineAuthorized"]
        clients.append(c)
    everyone = set(st.nodes)

    async def one_shot(c):
        status, body = await c.request("POST", "/machine/map", c.map_request(Stream=False))
        assert status == 200 and len(body) > SEAL_IN_PLACE
        (msg,) = FrameReader().receive_data(body)
        return msg

    streams = [Stream(c) for c in clients]
    firsts, shots = await asyncio.gather(
        asyncio.gather(*(s.wait(lambda m: "Node" in m, timeout=60) for s in streams)),
        asyncio.gather(*(one_shot(c) for c in clients)))
    for msg in [*firsts, *shots]:
        assert {p["ID"] for p in msg["Peers"]} | {msg["Node"]["ID"]} == everyone
        assert len(msg["Peers"]) == len(everyone) - 1
    for s in streams:
        await s.close()
    for c in clients:
        await c.close()
