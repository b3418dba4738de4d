from app.core.authid import is_auth_id, new_auth_id


def test_new_ids_are_valid_and_distinct():
    ids = {new_auth_id() for _ in range(50)}
    assert len(ids) == 50 and all(is_auth_id(i) and len(i) == 38 for i in ids)


def test_anything_else_is_refused():
    for bad in ("", "hskey-authreq-", "hskey-authreq-" + "g" * 24, "hskey-authreq-" + "a" * 23,
                "hskey-authreq-" + "A" * 24, "hskey-auth-" + "a" * 27, "<script>", "hskey-authreq-" + "a" * 25):
        assert not is_auth_id(bad)
