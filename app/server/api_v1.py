"""REST API v1, headscale's shapes (HEADSCALE.md 3.1): camelCase, 64-bit ids as strings,
RFC 3339 times, errors as ``{"code", "message", "details"}``.

Served on the main listener (Bearer API key required) and on the admin unix socket (local
trust, used by the CLI). Every mutation goes through State, so it reaches nodes at once.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from quart import Blueprint, Response, current_app, request

from app.core import jsonsafe
from app.core.model import (
    TAGGED_DEVICES_DISPLAY,
    TAGGED_DEVICES_LOGIN,
    TAGGED_DEVICES_USER_ID,
    ApiKey,
    Node,
    PreAuthKey,
    RegisterMethod,
    User,
)
from app.core.tailcfg import go_time, parse_go_time
from app.service import auth_requests
from app.service.errors import Conflict, Invalid, NotFound, ServiceError
from app.store.errors import StoreError

STORE_STATUS = {"not_found": 404, "conflict": 409, "invalid": 400, "migration": 500}
# google.rpc codes, as grpc-gateway reports them.
GRPC_CODES = {400: 3, 401: 16, 403: 7, 404: 5, 405: 12, 409: 6, 413: 8, 429: 8, 500: 13, 501: 12, 503: 14}
# `headscale apikeys create`'s default; applied when a client sends no expiration.
API_KEY_DEFAULT_LIFETIME = timedelta(days=90)


def ts(dt: datetime | None) -> str | None:
    if dt is None or dt.year <= 1:
        return None
    return go_time(dt)


def user_json(u: User | None) -> dict[str, Any] | None:
    if u is None:
        return None
    return {
        "id": str(u.id), "name": u.name, "createdAt": ts(u.created_at), "displayName": u.display_name,
        "email": u.email, "providerId": u.provider_identifier or "", "provider": u.provider,
        "profilePicUrl": u.profile_pic_url,
    }


def preauthkey_json(k: PreAuthKey, users: dict[int, User], full: str | None = None) -> dict[str, Any]:
    return {
        "user": user_json(users.get(k.user_id)) if k.user_id is not None else None,
        "id": str(k.id), "key": full or k.masked, "reusable": k.reusable, "ephemeral": k.ephemeral,
        "used": k.used, "expiration": ts(k.expiration), "createdAt": ts(k.created_at),
        "aclTags": list(k.tags),
    }


def apikey_json(k: ApiKey) -> dict[str, Any]:
    return {"id": str(k.id), "prefix": k.masked, "expiration": ts(k.expiration),
            "createdAt": ts(k.created_at), "lastSeen": ts(k.last_seen)}


# Tagged nodes are listed as owned by headscale's pseudo-user (tags are their identity).
TAGGED_DEVICES = User(TAGGED_DEVICES_USER_ID, TAGGED_DEVICES_LOGIN, display_name=TAGGED_DEVICES_DISPLAY)
# A node that never connected has no disco key; headscale shows the zero key, not "".
ZERO_DISCO_KEY = "discokey:" + "0" * 64


def node_json(n: Node, state, keys: dict[int, PreAuthKey] | None = None) -> dict[str, Any]:
    """``keys`` (pre-auth keys by id) fills ``preAuthKey``, the key the node registered with."""
    from app.core.routes import served_routes

    available = sorted(set(n.routable_ips))
    owner = TAGGED_DEVICES if n.tags else state.users.get(n.user_id) if n.user_id is not None else None
    key = (keys or {}).get(n.auth_key_id) if n.auth_key_id is not None else None
    return {
        "id": str(n.id), "machineKey": n.machine_key, "nodeKey": n.node_key,
        "discoKey": n.disco_key or ZERO_DISCO_KEY,
        "ipAddresses": list(n.addresses), "name": n.hostname,
        "user": user_json(owner),
        "lastSeen": ts(n.last_seen), "expiry": ts(n.expiry),
        "preAuthKey": preauthkey_json(key, state.users) if key is not None else None,
        "createdAt": ts(n.created_at),
        "registerMethod": RegisterMethod.API_NAMES.get(n.register_method, "REGISTER_METHOD_UNSPECIFIED"),
        "givenName": n.given_name, "online": n.id in state.online,
        "approvedRoutes": list(n.approved_routes), "availableRoutes": available,
        "subnetRoutes": state.routes_of(n.id) if n.id in state.nodes else served_routes(n),
        "tags": list(n.tags),
    }


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_response(status: int, message: str) -> Response:
    body = {"code": GRPC_CODES.get(status, 2), "message": message, "details": []}
    return Response(json.dumps(body), status=status, content_type="application/json")


def ok(obj: Any, status: int = 200) -> Response:
    return Response(json.dumps(obj), status=status, content_type="application/json")


async def body_json() -> dict[str, Any]:
    raw = await request.get_data()
    if not raw:
        return {}
    try:
        obj = jsonsafe.loads(raw)
    except jsonsafe.JSONError as exc:
        raise ApiError(400, f"request body is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ApiError(400, "request body must be a JSON object")
    return obj


def ascii_digits(value: Any) -> bool:
    """At most 19 digits 0-9 (an int64): int() would also take "²", "٣", " 7" and "1_0"."""
    text = str(value)
    return text.isascii() and text.isdigit() and len(text) <= 19


def int_id(value: Any, what: str) -> int:
    if isinstance(value, bool) or not ascii_digits(value):
        raise ApiError(400, f"invalid {what}: {str(value)[:40]!r}")
    v = int(str(value))
    if v <= 0 or v >= 2**63:
        raise ApiError(400, f"invalid {what}: {value!r}")
    return v


def parse_time(value: Any, what: str) -> datetime | None:
    if value in (None, ""):
        return None
    try:
        return parse_go_time(str(value))
    except ValueError:
        raise ApiError(400, f"invalid {what}: expected an RFC 3339 time") from None


def api_blueprint() -> Blueprint:
    bp = Blueprint("api_v1", __name__, url_prefix="/api/v1")

    from app.server.api_nodes import NodeListCache  # it builds on this module's node_json shapes

    node_list = NodeListCache()

    def svc():
        return current_app.config["SERVICES"]

    async def keys_by_id() -> dict[int, PreAuthKey]:
        return {k.id: k for k in await svc().state.list_preauth_keys()}

    @bp.before_request
    async def authenticate():
        if request.scope.get("extensions", {}).get("headscale.trusted"):
            return None
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return error_response(401, "Unauthorized")
        try:
            key = await svc().state.db.validate_api_key(header[len("Bearer "):].strip())
        except StoreError:
            return error_response(401, "Unauthorized")
        if key.is_expired(svc().state.now()):
            return error_response(401, "Unauthorized")
        return None

    @bp.errorhandler(ApiError)
    async def on_api_error(e: ApiError):
        return error_response(e.status, e.message)

    @bp.errorhandler(ServiceError)
    async def on_service_error(e: ServiceError):
        return error_response(e.status, str(e))

    @bp.errorhandler(StoreError)
    async def on_store_error(e: StoreError):
        return error_response(STORE_STATUS.get(e.kind, 400), e.message)

    # ---- users ---------------------------------------------------------------------------
    @bp.get("/user")
    async def list_users():
        st = svc().state
        users = sorted(st.users.values(), key=lambda u: u.id)
        if request.args.get("id"):
            uid = int_id(request.args["id"], "user id")
            users = [u for u in users if u.id == uid]
        if request.args.get("name"):
            users = [u for u in users if u.name == request.args["name"]]
        if request.args.get("email"):
            users = [u for u in users if u.email == request.args["email"]]
        return ok({"users": [user_json(u) for u in users]})

    @bp.post("/user")
    async def create_user():
        b = await body_json()
        name = b.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ApiError(400, "name is required")
        u = await svc().state.create_user(name.strip(), str(b.get("displayName") or ""),
                                          str(b.get("email") or ""), str(b.get("pictureUrl") or ""))
        return ok({"user": user_json(u)})

    @bp.post("/user/<old_id>/rename/<new_name>")
    async def rename_user(old_id: str, new_name: str):
        u = await svc().state.rename_user(int_id(old_id, "user id"), new_name)
        return ok({"user": user_json(u)})

    @bp.delete("/user/<uid>")
    async def delete_user(uid: str):
        await svc().state.delete_user(int_id(uid, "user id"))
        return ok({})

    # ---- pre-auth keys ---------------------------------------------------------------------
    @bp.get("/preauthkey")
    async def list_preauthkeys():
        st = svc().state
        keys = await st.list_preauth_keys()
        if request.args.get("user"):   # headscale-ui lists per user (?user=<id>); headscale 0.29 ignores it
            want = request.args["user"]
            keys = [k for k in keys if k.user_id is not None and
                    (str(k.user_id) == want or st.users.get(k.user_id, User(0, "")).name == want)]
        return ok({"preAuthKeys": [preauthkey_json(k, st.users) for k in keys]})

    @bp.post("/preauthkey")
    async def create_preauthkey():
        st = svc().state
        b = await body_json()
        user_id = int_id(b["user"], "user id") if b.get("user") not in (None, "", "0", 0) else None
        tags = b.get("aclTags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise ApiError(400, "aclTags must be a list of strings")
        key, full = await st.create_preauth_key(
            user_id, reusable=bool(b.get("reusable")), ephemeral=bool(b.get("ephemeral")),
            expiration=parse_time(b.get("expiration"), "expiration"), tags=tags,
        )
        return ok({"preAuthKey": preauthkey_json(key, st.users, full)})

    @bp.post("/preauthkey/expire")
    async def expire_preauthkey():
        b = await body_json()
        if b.get("id") in (None, "", "0", 0) and isinstance(b.get("key"), str) and b["key"]:
            # Pre-0.28 clients (headscale-ui) send {user, key} with the key as listed (masked).
            st = svc().state
            match = [k for k in await st.list_preauth_keys() if b["key"].startswith(f"hskey-auth-{k.prefix}-")]
            if not match:
                raise NotFound("pre-auth key not found")
            b = {"id": match[0].id}
        await svc().state.expire_preauth_key(int_id(b.get("id"), "pre-auth key id"))
        return ok({})

    @bp.delete("/preauthkey")
    async def delete_preauthkey():
        await svc().state.delete_preauth_key(int_id(request.args.get("id"), "pre-auth key id"))
        return ok({})

    # ---- API keys ------------------------------------------------------------------------
    @bp.get("/apikey")
    async def list_apikeys():
        keys = await svc().state.db.list_api_keys()
        return ok({"apiKeys": [apikey_json(k) for k in keys]})

    @bp.post("/apikey")
    async def create_apikey():
        b = await body_json()
        st = svc().state
        # headscale stores the zero time for a missing expiration, which lists as year 1 and
        # fails its own validity check; Headplane refuses a key listed without a future
        # expiration. We give such keys headscale's CLI default lifetime instead.
        expiration = parse_time(b.get("expiration"), "expiration")
        if expiration is None or expiration.year <= 1:
            expiration = st.now() + API_KEY_DEFAULT_LIFETIME
        _, full = await st.create_api_key(expiration)
        return ok({"apiKey": full})

    async def _api_key_by(b: dict[str, Any]) -> ApiKey:
        db = svc().state.db
        if b.get("id") not in (None, "", "0", 0):
            return await db.get_api_key(int_id(b.get("id"), "API key id"))
        if b.get("prefix"):
            return await db.get_api_key_by_prefix(str(b["prefix"]))   # plain or hskey-api-<prefix>-***
        raise ApiError(400, "give either an id or a prefix")

    @bp.post("/apikey/expire")
    async def expire_apikey():
        k = await _api_key_by(await body_json())
        await svc().state.db.expire_api_key(k.id)
        return ok({})

    @bp.delete("/apikey/<prefix>")
    async def delete_apikey(prefix: str):
        b = {"prefix": prefix} if prefix and prefix != "-" else {}
        if request.args.get("id"):
            b = {"id": request.args["id"]}
        k = await _api_key_by(b)
        await svc().state.db.delete_api_key(k.id)
        return ok({})

    # ---- nodes ---------------------------------------------------------------------------
    @bp.get("/node")
    async def list_nodes():
        st = svc().state
        nodes = sorted(st.nodes.values(), key=lambda n: n.id)
        if request.args.get("user"):
            want = request.args["user"]
            nodes = [n for n in nodes if n.user_id is not None and
                     (str(n.user_id) == want or st.users.get(n.user_id, User(0, "")).name == want)]
        keys = await keys_by_id()
        # node_json's bytes, from pieces cached per node record (api_nodes.py)
        body = node_list.body(st, nodes, keys, complete=not request.args.get("user"))
        return Response(body, status=200, content_type="application/json")

    @bp.get("/node/<nid>")
    async def get_node(nid: str):
        st = svc().state
        return ok({"node": node_json(st.get_node(int_id(nid, "node id")), st, await keys_by_id())})

    @bp.delete("/node/<nid>")
    async def delete_node(nid: str):
        await svc().state.delete_node(int_id(nid, "node id"))
        return ok({})

    @bp.post("/node/<nid>/expire")
    async def expire_node(nid: str):
        st = svc().state
        b = await body_json()
        expiry = parse_time(request.args.get("expiry") or b.get("expiry"), "expiry")
        disable = str(request.args.get("disableExpiry") or b.get("disableExpiry") or "").lower() in ("1", "true")
        n = await st.expire_node(int_id(nid, "node id"), expiry, disable)
        return ok({"node": node_json(n, st, await keys_by_id())})

    @bp.post("/node/<nid>/rename/<new_name>")
    async def rename_node(nid: str, new_name: str):
        st = svc().state
        n = await st.rename_node(int_id(nid, "node id"), new_name)
        return ok({"node": node_json(n, st, await keys_by_id())})

    @bp.post("/node/<nid>/tags")
    async def tag_node(nid: str):
        st = svc().state
        b = await body_json()
        tags = b.get("tags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise ApiError(400, "tags must be a list of strings")
        n = await st.set_tags(int_id(nid, "node id"), tags)
        return ok({"node": node_json(n, st, await keys_by_id())})

    @bp.post("/node/<nid>/approve_routes")
    async def approve_routes(nid: str):
        st = svc().state
        b = await body_json()
        routes = b.get("routes") or []
        if not isinstance(routes, list) or not all(isinstance(r, str) for r in routes):
            raise ApiError(400, "routes must be a list of strings")
        n = await st.approve_routes(int_id(nid, "node id"), routes)
        return ok({"node": node_json(n, st, await keys_by_id())})

    @bp.post("/node/backfillips")
    async def backfill_ips():
        if str(request.args.get("confirmed", "")).lower() not in ("1", "true"):
            raise ApiError(400, "backfilling IPs needs confirmed=true")
        return ok({"changes": await svc().state.backfill_ips()})

    @bp.post("/debug/node")
    async def debug_create_node():
        b = await body_json()
        st = svc().state
        user = st.user_by_name(str(b.get("user") or "")) or (
            st.users.get(int(b["user"])) if ascii_digits(b.get("user") or "") else None)
        if user is None:
            raise NotFound(f"user {b.get('user')!r} not found")
        routes = b.get("routes") or []
        if not isinstance(routes, list) or not all(isinstance(r, str) for r in routes):
            raise ApiError(400, "routes must be a list of strings")
        name = str(b.get("name") or "")
        if not name:
            raise ApiError(400, "name is required")
        p = svc().registrar.add_debug_pending(str(b.get("key") or ""), name, routes)
        return ok({"node": {"id": "0", "machineKey": p.machine_key, "nodeKey": p.node_key, "name": name,
                            "givenName": name, "user": user_json(user), "ipAddresses": [], "online": False,
                            "availableRoutes": routes, "approvedRoutes": [], "subnetRoutes": [], "tags": [],
                            "registerMethod": "REGISTER_METHOD_CLI"}})

    @bp.post("/auth/approve")
    async def auth_approve():
        b = await body_json()
        s = svc()
        await auth_requests.decide(str(b.get("authId") or ""), True, ssh_checks=s.ssh_checks,
                                   registrar=s.registrar, oidc=getattr(s, "oidc", None))
        return ok({})

    @bp.post("/auth/reject")
    async def auth_reject():
        b = await body_json()
        s = svc()
        await auth_requests.decide(str(b.get("authId") or ""), False, ssh_checks=s.ssh_checks,
                                   registrar=s.registrar, oidc=getattr(s, "oidc", None))
        return ok({})

    async def _register(user_ref: Any, auth_id: Any):
        st = svc().state
        if not auth_id:
            raise ApiError(400, "a registration id (--auth-id / --key) is required")
        user = None
        if user_ref not in (None, ""):
            ref = str(user_ref)
            user = st.users.get(int(ref)) if ascii_digits(ref) else None
            user = user or st.user_by_name(ref)
        if user is None:
            raise NotFound(f"user {user_ref!r} not found")
        n = await svc().registrar.complete(str(auth_id), user)
        return ok({"node": node_json(n, st, await keys_by_id())})

    @bp.post("/node/register")
    async def register_node():
        b = await body_json()
        return await _register(request.args.get("user") or b.get("user"), request.args.get("key") or b.get("key"))

    @bp.post("/auth/register")
    async def auth_register():
        b = await body_json()
        return await _register(b.get("user"), b.get("authId"))

    # ---- policy --------------------------------------------------------------------------
    @bp.get("/policy")
    async def get_policy():
        pol = await svc().policy.get()
        if pol is None:
            # headscale's words: Headplane keys on them to offer an empty, editable policy.
            raise NotFound("loading ACL from database: acl policy not found")
        text, updated = pol
        return ok({"policy": text, "updatedAt": ts(updated)})

    @bp.put("/policy")
    async def set_policy():
        b = await body_json()
        text = b.get("policy")
        if not isinstance(text, str):
            raise ApiError(400, "policy must be a string")
        text, updated = await svc().policy.set(text)
        return ok({"policy": text, "updatedAt": ts(updated)})

    @bp.post("/policy/check")
    async def check_policy():
        b = await body_json()
        text = b.get("policy")
        if not isinstance(text, str):
            raise ApiError(400, "policy must be a string")
        svc().policy.check(text)
        return ok({})

    @bp.get("/health")
    async def health():
        good = await svc().state.db.ping()
        return ok({"databaseConnectivity": good}, 200 if good else 500)

    return bp


__all__ = ["Conflict", "Invalid", "api_blueprint"]
