"""headscale nodes …"""

from tests.cli.conftest import NODE, NODE2, cells


def test_list_table_columns(run, api):
    api.reply("GET", "/api/v1/node", {"nodes": [NODE, NODE2]})
    r = run("nodes", "list")
    assert r.code == 0 and api.last.query == {}
    lines = r.out.splitlines()
    header = cells(lines[0])
    assert header == ["ID", "Hostname", "Name", "MachineKey", "NodeKey", "User", "Tags", "IP addresses",
                      "Ephemeral", "Last seen", "Expiration", "Connected", "Expired"]
    first = cells(lines[1])
    assert first == ["7", "laptop", "laptop-1", "[ERERE]", "[IiIiI]", "alice", "tag:a", "100.64.0.7",
                     "true", "2026-07-01 11:59:00", "N/A", "online", "no"]
    second = cells(lines[2])  # continuation line of the multi-line cells
    assert second[6:8] == ["tag:b", "fd7a:115c:a1e0::7"] and set(second[:6]) == {""}
    third = cells(lines[3])
    assert third[0] == "8" and third[8:] == ["false", "2026-07-01 11:59:00", "2026-06-30 00:00:00", "offline", "yes"]


def test_list_filter_and_machine_output(run, api):
    api.reply("GET", "/api/v1/node", {"nodes": [NODE]})
    r = run("node", "ls", "-u", "alice", "-o", "json")
    assert api.last.query == {"user": "alice"}
    assert r.json == [NODE]


def test_list_routes(run, api):
    api.reply("GET", "/api/v1/node", {"nodes": [NODE, NODE2]})
    r = run("nodes", "list-routes")
    lines = r.out.splitlines()
    assert cells(lines[0]) == ["ID", "Hostname", "Approved", "Available", "Serving (Primary)"]
    assert cells(lines[1]) == ["7", "laptop-1", "10.0.0.0/8", "10.0.0.0/8", "10.0.0.0/8"]
    assert cells(lines[2]) == ["", "", "", "192.168.0.0/24", ""]
    assert len(lines) == 3  # node 8 has no routes
    assert run("nodes", "routes", "-i", "8", "-o", "json").json == []
    assert run("nodes", "lsr", "-i", "7", "-o", "json").json == [NODE]


def test_approve_routes(run, api):
    api.reply("POST", "/api/v1/node/7/approve_routes", {"node": NODE})
    r = run("nodes", "approve-routes", "-i", "7", "-r", "10.0.0.0/8,192.168.0.0/24")
    assert (r.code, r.out) == (0, "Node updated\n")
    assert api.last.body == {"routes": ["10.0.0.0/8", "192.168.0.0/24"]}
    run("nodes", "approve-routes", "-i", "7", "-r", "")
    assert api.last.body == {"routes": []}
    run("nodes", "approve-routes", "-i", "7", "-r", "10.0.0.0/8", "-r", "::/0")
    assert api.last.body == {"routes": ["10.0.0.0/8", "::/0"]}


def test_expire_now_at_and_disable(run, api):
    api.reply("POST", "/api/v1/node/7/expire", {"node": NODE})
    r = run("nodes", "expire", "-i", "7")
    assert (r.code, r.out) == (0, "Node expired\n")
    assert api.last.query == {"expiry": "2026-07-01T12:00:00Z"}
    r = run("nodes", "logout", "-i", "7", "-e", "2026-08-27T10:00:00+02:00")
    assert r.out == "Node expiration updated\n" and api.last.query == {"expiry": "2026-08-27T08:00:00Z"}
    r = run("nodes", "e", "-i", "7", "-d")
    assert r.out == "Node expiry disabled\n" and api.last.query == {"disableExpiry": "true"}
    r = run("nodes", "exp", "-i", "7", "-e", "tomorrow")
    assert r.code == 1 and "is not an RFC 3339 time" in r.err
    assert run("nodes", "expire", "-i", "x").code == 2


def test_rename(run, api):
    api.reply("POST", "/api/v1/node/7/rename/new-name", {"node": NODE})
    r = run("nodes", "rename", "-i", "7", "new-name", "-o", "json")
    assert r.json == NODE
    assert run("nodes", "rename", "-i", "7").code == 2


def test_delete_confirms(run, api):
    api.reply("GET", "/api/v1/node/7", {"node": NODE})
    api.reply("DELETE", "/api/v1/node/7", {})
    r = run("nodes", "delete", "-i", "7", stdin="no\n")
    assert r.out == "Node not deleted\n" and "Do you want to remove the node laptop?" in r.err
    assert [q.method for q in api.requests] == ["GET"]
    r = run("nodes", "del", "-i", "7", "--force", "-o", "json")
    assert r.json == {"Result": "Node deleted"} and api.last.method == "DELETE"


def test_delete_unknown_node(run, api):
    api.reply("GET", "/api/v1/node/9", {"code": 5, "message": "node not found"}, status=404)
    r = run("nodes", "delete", "-i", "9", "--force")
    assert (r.code, r.err) == (1, "Error: node not found\n")


def test_tag(run, api):
    api.reply("POST", "/api/v1/node/7/tags", {"node": NODE})
    r = run("nodes", "tag", "-i", "7", "-t", "tag:a,tag:b")
    assert (r.code, r.out) == (0, "Node updated\n") and api.last.body == {"tags": ["tag:a", "tag:b"]}
    run("nodes", "tags", "-i", "7", "--tags", "tag:a", "-t", "tag:c")
    assert api.last.body == {"tags": ["tag:a", "tag:c"]}
    run("nodes", "t", "-i", "7")
    assert api.last.body == {"tags": []}


def test_register_is_deprecated_but_works(run, api):
    api.reply("POST", "/api/v1/node/register", {"node": NODE})
    r = run("nodes", "register", "-u", "alice", "-k", "hskey-reg-abc")
    assert r.out == "Node laptop-1 registered\n" and "deprecated" in r.err
    assert api.last.query == {"user": "alice", "key": "hskey-reg-abc"}
    assert run("nodes", "register", "-u", "alice").code == 2


def test_backfillips(run, api):
    api.reply("POST", "/api/v1/node/backfillips", {"changes": ["node 7: added fd7a::7"]})
    r = run("nodes", "backfillips", stdin="n\n")
    assert r.code == 0 and api.requests == []
    r = run("nodes", "backfillips", "--force")
    assert r.out == "node 7: added fd7a::7\nNode IPs backfilled successfully\n"
    assert api.last.query == {"confirmed": "true"}


def test_global_flags_anywhere_and_bool_equals(run, api):
    api.reply("GET", "/api/v1/node/7", {"node": NODE})
    api.reply("DELETE", "/api/v1/node/7", {})
    r = run("--force=true", "nodes", "delete", "-i", "7")
    assert r.out == "Node deleted\n"
    r = run("nodes", "delete", "--force=false", "-i", "7")
    assert r.out == "Node not deleted\n"
