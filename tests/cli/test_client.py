"""The HTTP client: errors, remote mode, socket problems."""

import io
import os
import socket

from app.cli.client import ApiClient, base_url, error_message_from_body
from app.cli.main import main
from tests.cli.conftest import USER


def cli(*argv, env):
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), env=env, stdin=io.StringIO(""), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_missing_socket_hints_the_server_is_not_running(short_dir):
    sock = os.path.join(short_dir, "none.sock")
    code, out, err = cli("users", "list", env={"HEADSCALE_UNIX_SOCKET": sock})
    assert code == 1 and out == ""
    assert err.startswith(f"Error: cannot connect to headscale: socket {sock} does not exist.")
    assert "Is the server running?" in err and err.count("\n") == 1


def test_stale_socket(short_dir):
    sock = os.path.join(short_dir, "stale.sock")
    s = socket.socket(socket.AF_UNIX)
    s.bind(sock)
    s.close()  # bound, never listening
    code, _, err = cli("nodes", "list", env={"HEADSCALE_UNIX_SOCKET": sock})
    assert code == 1 and f"nothing is listening on {sock}" in err


def test_timeout(short_dir):
    sock = os.path.join(short_dir, "slow.sock")
    s = socket.socket(socket.AF_UNIX)
    s.bind(sock)
    s.listen(1)  # accepts, never answers
    try:
        code, _, err = cli("users", "list", env={"HEADSCALE_UNIX_SOCKET": sock, "HEADSCALE_CLI_TIMEOUT": "200ms"})
    finally:
        s.close()
    assert code == 1 and "timed out after 0.2s" in err


def test_error_bodies(run, api):
    api.reply("GET", "/api/v1/user", "internal failure\nwith detail", status=500, content_type="text/plain")
    assert run("users", "list").err == "Error: internal failure; with detail\n"
    api.reply("GET", "/api/v1/user", "", status=503, content_type="text/plain")
    assert run("users", "list").err == "Error: HTTP 503 Service Unavailable\n"
    api.reply("GET", "/api/v1/user", {"title": "Not Found", "status": 404, "detail": "listing users",
                                      "errors": [{"message": "user not found"}]}, status=404,
              content_type="application/problem+json")
    assert run("users", "list").err == "Error: listing users: user not found\n"
    api.reply("GET", "/api/v1/user", "this is not json", status=200, content_type="text/plain")
    assert "not JSON" in run("users", "list").err


def test_error_message_shapes():
    assert error_message_from_body(b'{"code":3,"message":"bad","details":[]}') == "bad"
    assert error_message_from_body(b'{"error":"nope"}') == "nope"
    assert error_message_from_body(b'"quoted"') == "quoted"
    assert error_message_from_body(b"") == ""


def test_remote_mode_sends_bearer_key(tcp_api):
    tcp_api.reply("GET", "/api/v1/user", {"users": [USER]})
    env = {"HEADSCALE_CLI_ADDRESS": tcp_api.address, "HEADSCALE_CLI_API_KEY": "hskey-api-abc-SECRET",
           "HEADSCALE_UNIX_SOCKET": "/nonexistent.sock"}
    code, out, err = cli("users", "list", "-o", "json", env=env)
    assert (code, err) == (0, "") and out.startswith("[")
    assert tcp_api.last.headers["authorization"] == "Bearer hskey-api-abc-SECRET"


def test_remote_mode_needs_api_key_and_never_prints_it(tcp_api):
    code, _, err = cli("users", "list", env={"HEADSCALE_CLI_ADDRESS": tcp_api.address})
    assert code == 1 and "HEADSCALE_CLI_API_KEY" in err
    tcp_api.reply("GET", "/api/v1/user", "Unauthorized", status=401, content_type="text/plain")
    env = {"HEADSCALE_CLI_ADDRESS": tcp_api.address, "HEADSCALE_CLI_API_KEY": "hskey-api-abc-SECRET"}
    code, out, err = cli("users", "list", env=env)
    assert code == 1 and err.startswith("Error: Unauthorized (check cli.api_key")
    assert "SECRET" not in out + err


def test_base_url():
    assert base_url("hs.example.com:443") == "https://hs.example.com:443"
    assert base_url("http://127.0.0.1:8080/") == "http://127.0.0.1:8080"
    c = ApiClient(address="https://hs.example.com/prefix", api_key="k")
    assert c._prefix == "/prefix" and c._netloc == "hs.example.com"


def test_remote_connection_refused():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    env = {"HEADSCALE_CLI_ADDRESS": f"http://127.0.0.1:{port}", "HEADSCALE_CLI_API_KEY": "k"}
    code, _, err = cli("nodes", "list", env=env)
    assert code == 1 and err.startswith(f"Error: cannot connect to headscale at http://127.0.0.1:{port}")
