"""headscale preauthkeys … / apikeys …"""

from tests.cli.conftest import APIKEY, PREAUTH, USER, cells


def test_preauthkey_create_body(run, api):
    api.reply("POST", "/api/v1/preauthkey", {"preAuthKey": PREAUTH})
    r = run("preauthkeys", "create", "-u", "1", "--reusable", "--tags", "tag:a,tag:b")
    assert (r.code, r.out) == (0, PREAUTH["key"] + "\n")
    assert api.last.body == {"user": "1", "reusable": True, "ephemeral": False,
                             "expiration": "2026-07-01T13:00:00Z", "aclTags": ["tag:a", "tag:b"]}


def test_preauthkey_create_defaults_expiration_and_aliases(run, api):
    api.reply("POST", "/api/v1/preauthkey", {"preAuthKey": PREAUTH})
    r = run("authkey", "c", "--ephemeral", "-e", "90d", "-o", "json")
    assert r.json == PREAUTH
    assert api.last.body == {"reusable": False, "ephemeral": True, "expiration": "2026-09-29T12:00:00Z",
                             "aclTags": []}  # no user: a tags-only key
    run("pre", "new", "--user", "1", "--expiration", "10m", "--reusable=true")
    assert api.last.body["expiration"] == "2026-07-01T12:10:00Z" and api.last.body["reusable"] is True
    assert run("preauthkeys", "create", "-e", "soon").code == 2


def test_preauthkey_user_name_is_resolved(run, api):
    api.reply("GET", "/api/v1/user", {"users": [USER]})
    api.reply("POST", "/api/v1/preauthkey", {"preAuthKey": PREAUTH})
    run("preauthkeys", "create", "-u", "alice")
    assert api.requests[0].query == {"name": "alice"} and api.last.body["user"] == "1"
    api.reply("GET", "/api/v1/user", {"users": []})
    r = run("preauthkeys", "create", "-u", "nobody")
    assert (r.code, r.err) == (1, "Error: no user named 'nobody'\n")


def test_preauthkey_list(run, api):
    tagged = {**PREAUTH, "id": "5", "key": "hskey-auth-zzz-***", "user": None, "aclTags": ["tag:srv", "tag:db"],
              "expiration": "2026-06-01T00:00:00Z"}
    api.reply("GET", "/api/v1/preauthkey", {"preAuthKeys": [PREAUTH, tagged]})
    r = run("preauthkeys", "list")
    lines = [cells(line) for line in r.out.splitlines()]
    assert lines[0] == ["ID", "Key/Prefix", "Reusable", "Ephemeral", "Used", "Expiration", "Created", "Owner"]
    assert lines[1] == ["3", PREAUTH["key"], "true", "false", "false", "2026-07-01 13:00:00",
                        "2026-07-01 12:00:00", "alice"]
    assert lines[2][0] == "5" and lines[2][-1] == "tag:srv" and lines[3][-1] == "tag:db"
    assert run("preauthkey", "ls", "-o", "json").json == [PREAUTH, tagged]


def test_preauthkey_expire_and_delete(run, api):
    api.reply("POST", "/api/v1/preauthkey/expire", {})
    api.reply("DELETE", "/api/v1/preauthkey", {})
    r = run("preauthkeys", "expire", "-i", "3")
    assert r.out == "Key expired\n" and api.last.body == {"id": "3"}
    r = run("preauthkeys", "revoke", "--id", "3", "-o", "json")
    assert r.json == {}
    r = run("preauthkeys", "rm", "-i", "3")
    assert r.out == "Key deleted\n" and api.last.method == "DELETE" and api.last.query == {"id": "3"}
    r = run("preauthkeys", "delete")
    assert (r.code, r.err) == (1, "Error: missing --id parameter\n")


def test_apikey_create(run, api):
    api.reply("POST", "/api/v1/apikey", {"apiKey": "hskey-api-abcdefghijkl-SECRET"})
    r = run("apikeys", "create")
    assert r.out == "hskey-api-abcdefghijkl-SECRET\n"
    assert api.last.body == {"expiration": "2026-09-29T12:00:00Z"}  # default 90d
    r = run("apikey", "new", "-e", "1h", "-o", "json")
    assert r.json == "hskey-api-abcdefghijkl-SECRET" and api.last.body == {"expiration": "2026-07-01T13:00:00Z"}


def test_apikey_list(run, api):
    api.reply("GET", "/api/v1/apikey", {"apiKeys": [APIKEY]})
    lines = run("api", "ls").out.splitlines()
    assert cells(lines[0]) == ["ID", "Prefix", "Expiration", "Created"]
    assert cells(lines[1]) == ["4", APIKEY["prefix"], "2026-09-29 12:00:00",
                                                            "2026-07-01 12:00:00"]


def test_apikey_expire_by_prefix_or_id(run, api):
    api.reply("POST", "/api/v1/apikey/expire", {})
    run("apikeys", "expire", "-p", "abcdefghijkl")
    assert api.last.body == {"prefix": "abcdefghijkl"}
    run("apikeys", "exp", "-i", "4")
    assert api.last.body == {"id": "4"}
    assert run("apikeys", "expire").err == "Error: either --id or --prefix must be provided\n"
    assert run("apikeys", "expire", "-i", "4", "-p", "x").err == "Error: only one of --id or --prefix can be provided\n"


def test_apikey_delete(run, api):
    api.reply("GET", "/api/v1/apikey", {"apiKeys": [APIKEY]})
    api.reply("DELETE", "/api/v1/apikey/abcdefghijkl", {})
    api.reply("DELETE", "/api/v1/apikey/" + APIKEY["prefix"], {})
    r = run("apikeys", "delete", "-p", "abcdefghijkl")
    assert r.out == "Key deleted\n" and api.last.path == "/api/v1/apikey/abcdefghijkl"
    r = run("apikeys", "remove", "-i", "4")
    assert r.code == 0 and api.last.method == "DELETE" and api.last.path == "/api/v1/apikey/" + APIKEY["prefix"]
    r = run("apikeys", "del", "-i", "99")
    assert (r.code, r.err) == (1, "Error: API key with ID 99 not found\n")
