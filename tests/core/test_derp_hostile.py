"""A DERP login whose sealed ClientInfo is hostile JSON closes that connection cleanly."""

import pytest

from app.core.derp import frames
from app.core.derp.errors import HandshakeError
from app.core.derp.frames import MAX_CLIENT_INFO_LEN, ClientInfo, FrameType
from tests.core.test_derp_relay import Net, priv

DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize("body", [DEEP[:MAX_CLIENT_INFO_LEN - 200], b'{"AppName": "\\ud800"}', b'{"version": NaN}',
                                  b'{"AppName": "a\\u0000"}', b"\xff"])
def test_client_info_that_is_not_usable_json_closes_only_that_login(body):
    with pytest.raises(HandshakeError):
        ClientInfo.from_json(body)
    net = Net()
    good = net.login(1)
    bad = net.connect()
    [greeting] = net.take(bad)
    server_public = frames.parse_server_key(greeting.payload)
    sealed = frames.seal(priv(2), server_public, body)
    net.feed(bad, frames.encode_frame(FrameType.CLIENT_INFO, frames.public_key_of(priv(2)) + sealed))
    assert net.closed == {bad: "handshake"}
    assert good not in net.closed


def test_client_info_nested_100000_levels_is_a_handshake_error():
    with pytest.raises(HandshakeError, match="nested deeper"):
        ClientInfo.from_json(DEEP)
