"""`headscale auth approve|reject --auth-id ID`: one command for every pending auth request.

An id names either an SSH check (approve lets the session in, reject refuses it) or a machine
waiting at its login URL. For a waiting machine, reject refuses the login (the client is told
so); approve needs to know the user: it completes a web sign-in whose person already signed in
at the identity provider but has not pressed "confirm", and otherwise says to use
`headscale auth register --auth-id ID --user USER`.
"""

from __future__ import annotations

from app.core.authid import is_auth_id
from app.service.errors import Invalid, NotFound


async def decide(auth_id: str, approve: bool, *, ssh_checks, registrar, oidc) -> dict:
    if not is_auth_id(auth_id):
        raise Invalid(f"invalid auth id {auth_id!r}: copy it from the login or SSH check URL")
    if ssh_checks is not None and auth_id in ssh_checks.pending:
        ssh_checks.decide(auth_id, approve)
        return {"kind": "ssh_check"}
    pending = registrar.pending.get(auth_id)
    if pending is None or pending.done.is_set():
        raise NotFound(f"no pending SSH check or login with id {auth_id!r} (expired or unknown)")
    if not approve:
        registrar.reject(auth_id)
        if oidc is not None:
            oidc.forget(auth_id)
        return {"kind": "registration"}
    if oidc is None or auth_id not in oidc.confirmations:
        raise Invalid(f"login {auth_id} has no signed-in user to approve: admit it with "
                      f"`headscale auth register --auth-id {auth_id} --user <user>`")
    user, node, _new = await oidc.approve(auth_id)
    return {"kind": "registration", "nodeId": str(node.id), "user": user.name}
