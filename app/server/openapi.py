"""The OpenAPI 3.1 document of ``/api/v1``, built from one route table.

``OPERATIONS`` lists every route of ``api_v1.py`` with its parameters, request body and 200
body; ``document()`` turns it into the document served at ``/api/v1/openapi.json`` and at
headscale's ``/swagger/v1/openapiv2.json``. tests/server/test_openapi.py fails when a Quart
route or a response shape drifts from it, and runs schemathesis over every operation.

Every error is ``Error`` (grpc-gateway's shape, kept by headscale 0.29 and read by the tools);
``code`` is the google.rpc code (3 invalid argument, 5 not found, 6 already exists, 16
unauthenticated, 13 internal).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from app import HEADSCALE_API_VERSION, __version__
from app.core import tagnames


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(t: str, **kw: Any) -> dict[str, Any]:
    return {"type": [t, "null"], **kw}


STR = {"type": "string"}
BOOL = {"type": "boolean"}
ID = {"type": "string", "pattern": "^[0-9]+$", "description": "64-bit id as a decimal string"}
TIME = _nullable("string", format="date-time", description="RFC 3339; null when unset")
STRS = {"type": "array", "items": STR}
# Tags an admin may set (app/core/tagnames.py); anything else is a 400 naming this shape.
TAGS_IN = {"type": "array", "items": {"type": "string", "pattern": f"^{tagnames.PATTERN}$",
                                      "description": tagnames.SHAPE}}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object", "required": ["code", "message", "details"],
        "properties": {"code": {"type": "integer"}, "message": STR, "details": {"type": "array"}},
    },
    "User": {
        "type": "object",
        "required": ["id", "name", "createdAt", "displayName", "email", "providerId", "provider", "profilePicUrl"],
        "properties": {"id": ID, "name": STR, "createdAt": TIME, "displayName": STR, "email": STR,
                       "providerId": STR, "provider": STR, "profilePicUrl": STR},
    },
    "PreAuthKey": {
        "type": "object",
        "required": ["user", "id", "key", "reusable", "ephemeral", "used", "expiration", "createdAt", "aclTags"],
        "properties": {
            "user": {"oneOf": [_ref("User"), {"type": "null"}], "description": "null for tag-only keys"},
            "id": ID, "key": {"type": "string", "description": "full only in the create response"},
            "reusable": BOOL, "ephemeral": BOOL, "used": BOOL, "expiration": TIME, "createdAt": TIME,
            "aclTags": STRS,
        },
    },
    "ApiKey": {
        "type": "object", "required": ["id", "prefix", "expiration", "createdAt", "lastSeen"],
        "properties": {"id": ID, "prefix": STR, "expiration": TIME, "createdAt": TIME, "lastSeen": TIME},
    },
    "Node": {
        "type": "object",
        "required": ["id", "machineKey", "nodeKey", "discoKey", "ipAddresses", "name", "user", "lastSeen",
                     "expiry", "preAuthKey", "createdAt", "registerMethod", "givenName", "online",
                     "approvedRoutes", "availableRoutes", "subnetRoutes", "tags"],
        "properties": {
            "id": ID, "machineKey": STR, "nodeKey": STR, "discoKey": STR, "ipAddresses": STRS, "name": STR,
            "user": {"oneOf": [_ref("User"), {"type": "null"}],
                     "description": "tagged nodes: the pseudo-user tagged-devices (id 2147455555)"},
            "lastSeen": TIME, "expiry": TIME,
            "preAuthKey": {"oneOf": [_ref("PreAuthKey"), {"type": "null"}]},
            "createdAt": TIME,
            "registerMethod": {"type": "string", "enum": ["REGISTER_METHOD_UNSPECIFIED", "REGISTER_METHOD_AUTH_KEY",
                                                          "REGISTER_METHOD_CLI", "REGISTER_METHOD_OIDC"]},
            "givenName": STR, "online": BOOL, "approvedRoutes": STRS, "availableRoutes": STRS,
            "subnetRoutes": STRS, "tags": STRS,
        },
    },
    "Policy": {
        "type": "object", "required": ["policy", "updatedAt"],
        "properties": {"policy": {"type": "string", "description": "HuJSON text"},
                       "updatedAt": {**TIME, "description": "null in policy.mode file"}},
    },
    "Empty": {"type": "object", "maxProperties": 0},
}


def _obj(required: list[str] | None = None, **props: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        out["required"] = required
    return out


def _wrap(key: str, schema: dict[str, Any]) -> dict[str, Any]:
    return _obj([key], **{key: schema})


@dataclass(frozen=True)
class Op:
    method: str
    path: str                                   # OpenAPI form: /api/v1/node/{nodeId}
    op_id: str
    tag: str
    summary: str
    ok: dict[str, Any]                          # schema of the 200 body
    path_params: tuple[tuple[str, dict[str, Any]], ...] = ()
    query: tuple[tuple[str, dict[str, Any]], ...] = ()
    body: dict[str, Any] | None = None
    public: bool = False                        # no API key needed
    errors: tuple[int, ...] = (400, 401, 404)
    extra: dict[str, Any] = field(default_factory=dict)


NODE_ID = (("nodeId", ID),)
NODE = _wrap("node", _ref("Node"))
EMPTY = _ref("Empty")

OPERATIONS: tuple[Op, ...] = (
    # users
    Op("get", "/api/v1/user", "listUsers", "Users", "List users (one filter at most)", _wrap("users", {
        "type": "array", "items": _ref("User")}), query=(("id", ID), ("name", STR), ("email", STR))),
    Op("post", "/api/v1/user", "createUser", "Users", "Create a user", _wrap("user", _ref("User")),
       body=_obj(["name"], name=STR, displayName=STR, email=STR, pictureUrl=STR), errors=(400, 401, 409)),
    Op("post", "/api/v1/user/{oldId}/rename/{newName}", "renameUser", "Users", "Rename a user",
       _wrap("user", _ref("User")), path_params=(("oldId", ID), ("newName", STR)), errors=(400, 401, 404, 409)),
    Op("delete", "/api/v1/user/{id}", "deleteUser", "Users", "Delete a user (that owns no nodes)", EMPTY,
       path_params=(("id", ID),)),
    # pre-auth keys
    Op("get", "/api/v1/preauthkey", "listPreAuthKeys", "PreAuthKeys",
       "List pre-auth keys (masked); ?user= (id or name) lists one user's", _wrap("preAuthKeys", {
           "type": "array", "items": _ref("PreAuthKey")}), query=(("user", STR),)),
    Op("post", "/api/v1/preauthkey", "createPreAuthKey", "PreAuthKeys",
       "Create a pre-auth key for a user, or a tag-only key", _wrap("preAuthKey", _ref("PreAuthKey")),
       body=_obj(user={"type": ["string", "integer", "null"]}, reusable=BOOL, ephemeral=BOOL,
                 expiration=TIME, aclTags=TAGS_IN)),
    Op("post", "/api/v1/preauthkey/expire", "expirePreAuthKey", "PreAuthKeys",
       "Expire a pre-auth key by id (or, for older tools, by {user, key} as listed)", EMPTY,
       body=_obj(id={"type": ["string", "integer"]}, user={"type": ["string", "integer"]}, key=STR)),
    Op("delete", "/api/v1/preauthkey", "deletePreAuthKey", "PreAuthKeys", "Delete a pre-auth key", EMPTY,
       query=(("id", ID),)),
    # API keys
    Op("get", "/api/v1/apikey", "listApiKeys", "ApiKeys", "List API keys (prefixes only)",
       _wrap("apiKeys", {"type": "array", "items": _ref("ApiKey")})),
    Op("post", "/api/v1/apikey", "createApiKey", "ApiKeys",
       "Create an API key (shown once); without an expiration it expires in 90 days",
       _wrap("apiKey", STR), body=_obj(expiration=TIME)),
    Op("post", "/api/v1/apikey/expire", "expireApiKey", "ApiKeys", "Expire an API key by id or prefix", EMPTY,
       body=_obj(id={"type": ["string", "integer"]}, prefix=STR)),
    Op("delete", "/api/v1/apikey/{prefix}", "deleteApiKey", "ApiKeys",
       "Delete an API key by prefix (or ?id= with prefix '-')", EMPTY,
       path_params=(("prefix", STR),), query=(("id", ID),)),
    # nodes
    Op("get", "/api/v1/node", "listNodes", "Nodes", "List nodes; ?user= (id or name) lists one user's",
       _wrap("nodes", {"type": "array", "items": _ref("Node")}), query=(("user", STR),)),
    Op("get", "/api/v1/node/{nodeId}", "getNode", "Nodes", "Get a node", NODE, path_params=NODE_ID),
    Op("delete", "/api/v1/node/{nodeId}", "deleteNode", "Nodes", "Delete a node", EMPTY, path_params=NODE_ID),
    Op("post", "/api/v1/node/{nodeId}/expire", "expireNode", "Nodes",
       "Expire a node now, at ?expiry=, or never (?disableExpiry=true)", NODE, path_params=NODE_ID,
       query=(("expiry", STR), ("disableExpiry", BOOL))),
    Op("post", "/api/v1/node/{nodeId}/rename/{newName}", "renameNode", "Nodes", "Rename a node (a DNS label)",
       NODE, path_params=(("nodeId", ID), ("newName", STR)), errors=(400, 401, 404, 409)),
    Op("post", "/api/v1/node/{nodeId}/tags", "setTags", "Nodes", "Set a node's tags (it becomes tagged)", NODE,
       path_params=NODE_ID, body=_obj(["tags"], tags=TAGS_IN)),
    Op("post", "/api/v1/node/{nodeId}/approve_routes", "setApprovedRoutes", "Nodes",
       "Approve subnet routes and exit-node routes", NODE, path_params=NODE_ID, body=_obj(["routes"], routes=STRS)),
    Op("post", "/api/v1/node/backfillips", "backfillNodeIPs", "Nodes", "Give every node an address of each family",
       _wrap("changes", STRS), query=(("confirmed", BOOL),)),
    Op("post", "/api/v1/node/register", "registerNode", "Nodes",
       "Admit a pending web login (user id or name, registration id)", NODE,
       query=(("user", STR), ("key", STR)), body=_obj(user=STR, key=STR)),
    Op("post", "/api/v1/debug/node", "debugCreateNode", "Debug", "Create a pending registration of a made-up node",
       _wrap("node", {"type": "object"}), body=_obj(["user", "key", "name"], user=STR, key=STR, name=STR,
                                                    routes=STRS)),
    # interactive requests
    Op("post", "/api/v1/auth/register", "authRegister", "Auth", "Admit a pending web login", NODE,
       body=_obj(["user", "authId"], user=STR, authId=STR)),
    Op("post", "/api/v1/auth/approve", "authApprove", "Auth", "Approve a pending SSH check", EMPTY,
       body=_obj(["authId"], authId=STR)),
    Op("post", "/api/v1/auth/reject", "authReject", "Auth", "Reject a pending SSH check", EMPTY,
       body=_obj(["authId"], authId=STR)),
    # policy
    Op("get", "/api/v1/policy", "getPolicy", "Policy",
       "The active policy (404 'acl policy not found' before one is set)", _ref("Policy")),
    Op("put", "/api/v1/policy", "setPolicy", "Policy", "Replace the policy (parsed, compiled and tested first)",
       _ref("Policy"), body=_obj(["policy"], policy=STR)),
    Op("post", "/api/v1/policy/check", "checkPolicy", "Policy", "Check a policy and run its tests; stores nothing",
       EMPTY, body=_obj(["policy"], policy=STR)),
    # misc
    Op("get", "/api/v1/health", "health", "Health", "Database connectivity",
       _obj(["databaseConnectivity"], databaseConnectivity=BOOL), errors=(401,)),
    Op("get", "/api/v1/openapi.json", "openapi", "Health", "This document", {"type": "object"}, public=True,
       errors=()),
)

_ERROR_TEXT = {400: "Invalid input", 401: "Missing or wrong API key", 404: "Not found", 409: "Conflict"}


def _operation(op: Op) -> dict[str, Any]:
    params = [{"name": n, "in": "path", "required": True, "schema": s} for n, s in op.path_params]
    params += [{"name": n, "in": "query", "required": False, "schema": s} for n, s in op.query]
    out: dict[str, Any] = {
        "operationId": op.op_id, "tags": [op.tag], "summary": op.summary,
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": op.ok}}}},
    }
    err = {"content": {"application/json": {"schema": _ref("Error")}}}
    for code in op.errors:
        out["responses"][str(code)] = {"description": _ERROR_TEXT[code], **err}
    if not op.public:
        out["responses"]["default"] = {"description": "Error", **err}
    if params:
        out["parameters"] = params
    if op.body is not None:
        out["requestBody"] = {"required": False, "content": {"application/json": {"schema": op.body}}}
    if op.public:
        out["security"] = []
    out.update(op.extra)
    return out


def document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "headscale REST API v1 (pyheadscale)",
            "version": HEADSCALE_API_VERSION.lstrip("v"),
            "description": f"headscale {HEADSCALE_API_VERSION}'s REST API as served by pyheadscale {__version__}. "
                           "Send an API key (`headscale apikeys create`) as `Authorization: Bearer <key>`.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}],
        "paths": paths,
        "components": {
            "schemas": copy.deepcopy(SCHEMAS),
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
    }
