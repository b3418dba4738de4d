"""headscale users …"""

from tests.cli.conftest import USER, USER2


def test_create_sends_headscale_body(run, api):
    api.reply("POST", "/api/v1/user", {"user": USER})
    r = run("users", "create", "alice", "-d", "Alice A.", "-e", "alice@example.com", "-p", "https://x/p.png")
    assert (r.code, r.out, r.err) == (0, "User created\n", "")
    assert api.last.method == "POST" and api.last.path == "/api/v1/user"
    assert api.last.body == {"name": "alice", "displayName": "Alice A.", "email": "alice@example.com",
                             "pictureUrl": "https://x/p.png"}
    assert api.last.headers["content-type"] == "application/json"
    assert "authorization" not in api.last.headers  # local trust over the socket


def test_create_aliases_and_machine_output(run, api):
    api.reply("POST", "/api/v1/user", {"user": USER})
    for argv in (["user", "c", "alice"], ["users", "new", "alice"]):
        r = run(*argv, "-o", "json")
        assert r.code == 0 and r.json == USER
    r = run("-o", "json-line", "users", "create", "alice")
    assert r.out.count("\n") == 1 and '"id":"1"' in r.out
    r = run("users", "create", "alice", "--output", "yaml")
    assert "name: alice" in r.out and "id: '1'" in r.out


def test_create_needs_a_name(run, api):
    r = run("users", "create")
    assert r.code == 2 and r.err.startswith("Error: the following arguments are required: NAME")
    assert api.requests == []


def test_list_table(run, api):
    api.reply("GET", "/api/v1/user", {"users": [USER, USER2]})
    r = run("users", "list")
    assert r.code == 0
    lines = r.out.splitlines()
    assert lines[0].split(" | ") == ["ID", "Name    ", "Username", "Email            ", "Created"]
    assert lines[1].split(" | ") == ["1 ", "Alice A.", "alice   ", "alice@example.com", "2026-06-01 10:00:00"]
    assert lines[2].startswith("2  |          | bob")
    assert api.last.query == {}


def test_list_json_prints_the_array(run, api):
    api.reply("GET", "/api/v1/user", {"users": [USER]})
    assert run("users", "ls", "-o", "json").json == [USER]
    api.reply("GET", "/api/v1/user", {})
    assert run("users", "show", "-o", "json").json == []


def test_list_filters_by_one_parameter(run, api):
    api.reply("GET", "/api/v1/user", {"users": [USER]})
    run("users", "list", "-i", "1", "-n", "alice")
    assert api.last.query == {"id": "1"}
    run("users", "list", "-n", "alice", "-e", "a@b")
    assert api.last.query == {"name": "alice"}
    run("users", "list", "--email", "a@b")
    assert api.last.query == {"email": "a@b"}


def test_rename_by_name_uses_the_found_id(run, api):
    api.reply("GET", "/api/v1/user", {"users": [USER]})
    api.reply("POST", "/api/v1/user/1/rename/al ice", {"user": {**USER, "name": "al ice"}})
    r = run("users", "mv", "-n", "alice", "-r", "al ice")
    assert (r.code, r.out) == (0, "User renamed\n")
    assert api.requests[0].query == {"name": "alice"}
    assert api.last.raw_path == "/api/v1/user/1/rename/al%20ice"


def test_rename_requires_new_name_and_a_selector(run, api):
    assert run("users", "rename", "-i", "1").code == 2
    r = run("users", "rename", "-r", "x")
    assert (r.code, r.err) == (1, "Error: --name or --identifier flag is required\n")


def test_rename_ambiguous(run, api):
    api.reply("GET", "/api/v1/user", {"users": [USER, USER2]})
    r = run("users", "rename", "-n", "a", "-r", "x")
    assert (r.code, r.err) == (1, "Error: multiple users match query, specify an ID\n")


def test_destroy_asks_and_respects_no(run, api):
    api.reply("GET", "/api/v1/user", {"users": [USER]})
    r = run("users", "destroy", "-i", "1", stdin="n\n")
    assert r.code == 0 and r.out == "User not destroyed\n"
    assert "Do you want to remove the user 'alice' (1)" in r.err
    assert [q.method for q in api.requests] == ["GET"]


def test_destroy_yes_and_force(run, api):
    api.reply("GET", "/api/v1/user", {"users": [USER]})
    api.reply("DELETE", "/api/v1/user/1", {})
    r = run("users", "destroy", "-i", "1", stdin="y\n")
    assert (r.code, r.out) == (0, "User destroyed\n")
    assert api.last.method == "DELETE" and api.last.path == "/api/v1/user/1"
    api.requests.clear()
    r = run("users", "delete", "--name", "alice", "--force", "-o", "json")
    assert r.code == 0 and r.json == {} and r.err == ""
    assert [q.method for q in api.requests] == ["GET", "DELETE"]


def test_destroy_no_answer_means_no(run, api):
    api.reply("GET", "/api/v1/user", {"users": [USER]})
    r = run("users", "destroy", "-i", "1", "-o", "json")  # stdin at EOF
    assert r.code == 0 and r.json == {"Result": "User not destroyed"}


def test_server_error_is_one_line(run, api):
    api.reply("POST", "/api/v1/user", {"code": 6, "message": "user already exists", "details": []}, status=409)
    r = run("users", "create", "alice")
    assert (r.code, r.out, r.err) == (1, "", "Error: user already exists\n")
    r = run("users", "create", "alice", "-o", "json-line")
    assert (r.code, r.out, r.err) == (1, "", '{"error":"user already exists"}\n')
