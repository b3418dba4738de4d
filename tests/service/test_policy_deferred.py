"""Node changes recompile the policy once, on the next read, not once per change; what is read
after any sequence of changes equals a compilation from scratch, and route auto-approval and
tag ownership (decided by identity) stay right while the compiled view is behind."""

from __future__ import annotations

import json

from app.config import dev_config
from app.core.model import Node
from app.service.policyview import compile_view
from app.service.state import State
from app.store import Database

POLICY = json.dumps({
    "groups": {"group:ops": ["ops@"]},
    "tagOwners": {"tag:web": ["ops@"]},
    "autoApprovers": {"routes": {"10.0.0.0/8": ["group:ops"]}},
    "acls": [{"action": "accept", "src": ["group:ops"], "dst": ["tag:web:443", "10.0.0.0/8:*"]},
             {"action": "accept", "src": ["autogroup:member"], "dst": ["autogroup:self:*"]}],
})


def _node(i: int, uid: int, *, tags: tuple[str, ...] = (), routes: tuple[str, ...] = ()) -> Node:
    return Node(id=0, machine_key=f"mkey:{i:064x}", node_key=f"nodekey:{i:064x}", hostname=f"h{i}",
                user_id=None if tags else uid, tags=tags, hostinfo={"Hostname": f"h{i}", "RoutableIPs": list(routes)})


async def _state(tmp_path) -> tuple[Database, State, object]:
    """A State on a fresh SQLite database with the user "ops"; the caller closes the database."""
    db = await Database.open(str(tmp_path / "db.sqlite"))
    st = State(db, dev_config(str(tmp_path)))
    await st.load()
    return db, st, await st.create_user("ops")


async def test_node_changes_defer_one_recompile(tmp_path):
    db, st, ops = await _state(tmp_path)
    cfg = st.cfg
    try:
        dev = await st.create_user("dev")
        await st.load_policy(POLICY)
        compiled_before = st.policy
        async with st.lock:
            for i in range(20):
                await st.create_node(_node(i, (ops if i % 2 else dev).id, tags=("tag:web",) if i % 5 == 0 else ()))
            router = await st.create_node(_node(99, ops.id, routes=("10.1.0.0/16",)))
        # nothing recompiled yet: the joins only marked the view stale
        assert st.identity_policy is compiled_before
        # ... yet the router's route was auto-approved by identity while the view was behind
        assert st.served[router.id] == ["10.1.0.0/16"]
        assert st.identity_policy.node_can_have_tag(st.nodes[router.id], "tag:web")
        # the first read compiles once, against everything that happened
        view = st.policy
        assert view is not compiled_before and st.policy is view
        scratch = compile_view(POLICY, list(st.users.values()), list(st.nodes.values()), cfg.server_url)
        for nid in st.nodes:
            assert view.peers(nid) == scratch.peers(nid)
            assert view.filter_rules(nid) == scratch.filter_rules(nid)
            assert view.ssh_policy(nid) == scratch.ssh_policy(nid)
        assert view.peers(router.id)     # the last joiner is known to the compiled view
        # a node leaving and a tag change: again one compile on read, equal to scratch
        some = sorted(st.nodes)[3]
        await st.delete_node(some)
        await st.set_tags(sorted(st.nodes)[4], ["tag:web"])
        assert st.identity_policy is view
        again = st.policy
        scratch = compile_view(POLICY, list(st.users.values()), list(st.nodes.values()), cfg.server_url)
        assert all(again.filter_rules(n) == scratch.filter_rules(n) and again.peers(n) == scratch.peers(n)
                   for n in st.nodes)
        # user changes compile at once (identity answers need the current users)
        carol = await st.create_user("carol")
        assert st.identity_policy.peers(router.id) == st.policy.peers(router.id)
        assert carol.id in {u.id for u in st.identity_policy.compiled.tailnet.users}
    finally:
        await db.close()


async def test_policy_set_installs_the_checked_compilation_unless_records_moved(tmp_path):
    db, st, ops = await _state(tmp_path)
    try:
        async with st.lock:
            for i in range(5):
                await st.create_node(_node(i, ops.id))
        st.check_policy(POLICY)
        checked = st._checked[1]
        await st.load_policy(POLICY)
        assert st.policy is checked                       # compiled once for check + install
        st.check_policy(POLICY.replace("443", "444"))
        checked = st._checked[1]
        async with st.lock:
            late = await st.create_node(_node(9, ops.id))   # a node joins between check and install
        await st.load_policy(POLICY.replace("443", "444"))
        assert st.policy is not checked and late.id in st.policy.compiled.tailnet.nodes
        st.check_policy(POLICY)
        checked = st._checked[1]
        await st.load_policy(POLICY.replace("443", "445"))   # another text than the one checked
        assert st.policy is not checked and st._checked is None
        assert st.policy.compiled.policy is not checked.compiled.policy
    finally:
        await db.close()
