"""The OpenAPI document, generated from the application itself.

`make openapi` writes it to the top-level `openapi.yaml`; a test fails when that file and
the app disagree, and `GET /api/openapi.yaml` serves the same text.
"""

from __future__ import annotations

from typing import Any

import yaml
from fastapi import FastAPI

from inbox_allocation.api.idempotency import KEY_SCHEMA_PATTERN, MAX_KEY_LENGTH
from inbox_allocation.db.seed_ids import ACME, ACME_ADMIN

MUTATING = ("post", "put", "delete")

_IDEMPOTENCY_DESCRIPTION = (
    "Makes a retry safe: the first request with a key runs; retries with the same key (same "
    "operator, method, path and body) get the stored status and body back with "
    "`Idempotent-Replayed: true`; a concurrent duplicate waits for the first. The same key with "
    "a different request is 422 IDEMPOTENCY_KEY_REUSED. Kept for IDEMPOTENCY_TTL (24 h); 5xx "
    "results are not kept, except that a request whose writes committed before it failed "
    "answers its retries 409 CONFLICT instead of running twice. 1 to 255 printable ASCII "
    "characters without surrounding spaces (else 400 VALIDATION_ERROR); wins over "
    "X-Idempotency-Key when both are sent. Requests refused before they run (413, a body "
    "that is not JSON, a client gone mid-upload) do not use up their key."
)


def _header(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": False, "description": description,
            "schema": schema}  # fmt: skip


def _document_middleware_headers(document: dict[str, Any]) -> None:
    """Headers handled by middleware, which FastAPI cannot see: idempotency keys, request and
    trace ids, replays and 413s — added to every operation they apply to."""
    headers = document.setdefault("components", {}).setdefault("headers", {})
    headers["X-Request-ID"] = {
        "description": "The request id (the caller's X-Correlation-ID or X-Request-ID, else a "
        "new UUIDv7); also sent as X-Correlation-ID",
        "schema": {"type": "string"},
    }
    headers["traceparent"] = {
        "description": "W3C trace context of this request's span",
        "schema": {"type": "string"},
    }
    headers["Idempotent-Replayed"] = {
        "description": "`true` when the response is the stored result of an earlier request "
        "with the same Idempotency-Key (also sent as X-Idempotency-Replay)",
        "schema": {"type": "string", "enum": ["true"]},
    }
    document["components"]["securitySchemes"] = {
        "TenantHeader": {"type": "apiKey", "in": "header", "name": "X-Tenant-ID",
                         "description": f"AUTH_MODE=headers: tenant UUID (demo: {ACME})"},
        "OperatorHeader": {"type": "apiKey", "in": "header", "name": "X-Operator-ID",
                           "description": "AUTH_MODE=headers: operator UUID (demo ADMIN: "
                           f"{ACME_ADMIN})"},
        "BearerAuth": {"type": "http", "scheme": "bearer",
                       "description": "AUTH_MODE=token: an API token (iat_…); AUTH_MODE=jwt: "
                       "a JWT from the identity provider"},
    }  # fmt: skip
    key_schema = {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH,
                  "pattern": KEY_SCHEMA_PATTERN}  # fmt: skip
    uuid_schema = UUID_SCHEMA
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            _tighten_parameters(path, method, operation)
            params = operation.setdefault("parameters", [])
            if path.startswith("/api/v1/"):
                # Either both identity headers (AUTH_MODE=headers) or a bearer credential
                # (token, jwt): Swagger's Authorize button fills in whichever is chosen.
                operation["security"] = [
                    {"TenantHeader": [], "OperatorHeader": []},
                    {"BearerAuth": []},
                ]
                params[:0] = [
                    _header("X-Tenant-ID", "Tenant UUID. Required with AUTH_MODE=headers; with "
                            "a bearer credential optional, and must then match it (else 401)",
                            uuid_schema),
                    _header("X-Operator-ID", "UUID of the calling operator; it must belong to "
                            "the tenant (else 401 UNAUTHORIZED). Required with "
                            "AUTH_MODE=headers; with a bearer credential optional, and must "
                            "then match it", uuid_schema),
                ]  # fmt: skip
            params += [
                _header("X-Request-ID", "Request id echoed in the response (any string)",
                        {"type": "string"}),
                _header("traceparent", "W3C trace context to continue", {"type": "string"}),
            ]  # fmt: skip
            # A token's creation is never replayed (it would store the secret).
            mutating = (
                method in MUTATING
                and path.startswith("/api/v1/")
                and not (method == "post" and path.endswith("/tokens"))
            )
            if mutating:
                params += [
                    _header("Idempotency-Key", _IDEMPOTENCY_DESCRIPTION, key_schema),
                    {**_header("X-Idempotency-Key", "Older name of Idempotency-Key", key_schema),
                     "deprecated": True},
                ]  # fmt: skip
            for status, response in operation.get("responses", {}).items():
                response_headers = response.setdefault("headers", {})
                response_headers["X-Request-ID"] = {"$ref": "#/components/headers/X-Request-ID"}
                response_headers["traceparent"] = {"$ref": "#/components/headers/traceparent"}
                if mutating and str(status) < "5":
                    response_headers["Idempotent-Replayed"] = {
                        "$ref": "#/components/headers/Idempotent-Replayed"
                    }
            if "requestBody" in operation:
                operation["responses"].setdefault("413", {
                    "description": "Request body over 1 MiB (PAYLOAD_TOO_LARGE)",
                    "content": {"application/json": {"schema": {
                        "$ref": "#/components/schemas/ErrorEnvelope"}}},
                })  # fmt: skip
                operation["responses"].setdefault("408", {
                    "description": "Request body not received within READ_TIMEOUT "
                                   "(REQUEST_TIMEOUT)",
                    "content": {"application/json": {"schema": {
                        "$ref": "#/components/schemas/ErrorEnvelope"}}},
                })  # fmt: skip


# Ids in paths, queries and identity headers: parsed by `domain.ids.parse_uuid` (400 for
# anything else). Declared as the canonical form; the service also takes 32 hex digits,
# `{…}` and `urn:uuid:` spellings for compatibility.
UUID_PARAMETERS = frozenset({"id", "inbox_id", "operator_id", "label_id"})
UUID_SCHEMA: dict[str, Any] = {"type": "string", "format": "uuid"}


PHONE_QUERY_PATTERN = r"^[^\x00]*[^\s\-.()+\x00][^\x00]*$"


def _case_insensitive(word: str) -> str:
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in word)


def _tighten_parameters(path: str, method: str, operation: dict[str, Any]) -> None:
    """Say exactly what each parameter accepts (FastAPI sees plain strings: the routes parse
    them themselves to give the contract's error codes)."""
    kept = []
    for param in operation.get("parameters", []):
        name = param["name"]
        if name in UUID_PARAMETERS and param["in"] in ("path", "query"):
            param["schema"] = {**UUID_SCHEMA, **{k: v for k, v in param["schema"].items()
                                                 if k in ("description", "examples")}}  # fmt: skip
            if path == "/api/v1/conversations":  # list filters: empty = no filter
                uuid_or_empty = [UUID_SCHEMA, {"type": "string", "maxLength": 0}]
                param["schema"] = {"anyOf": uuid_or_empty, **{
                    k: v for k, v in param["schema"].items() if k in ("description", "examples")
                }}  # fmt: skip
        if path == "/api/v1/labels" and method == "get" and name == "inbox_id":
            param["required"] = True  # 400 INVALID_QUERY without it
        if path == "/api/v1/search":
            if name == "q":
                continue  # an undocumented alias of `phone`, kept for old clients
            if name == "phone":
                param["required"] = True
                # Spaces, dashes, dots, parentheses and a leading + are ignored: something
                # else must be left (else 400 VALIDATION_ERROR).
                param["schema"] = {"type": "string", "pattern": PHONE_QUERY_PATTERN}
        if name == "sort":
            words = ("newest", "oldest", "priority")
            param["schema"] = {
                "type": "string",
                "description": "newest (default, also when empty), oldest or priority; "
                "case-insensitive",
                "pattern": "^(" + "|".join(_case_insensitive(w) for w in words) + ")?$",
            }
        if name == "state":
            param["schema"] = {"type": "string", "enum": ["", "QUEUED", "ALLOCATED", "RESOLVED"],
                               "description": "Only this state (empty: every state)"}  # fmt: skip
        kept.append(param)
    operation["parameters"] = kept


def _tighten_bodies(schemas: dict[str, Any]) -> None:
    """Rules of request bodies that their models check in code, stated in the document."""
    update = schemas.get("OperatorUpdate")
    if update is not None:
        role = update["properties"]["role"]
        role.update(role.pop("anyOf")[0])  # null is refused (400): absent means unchanged
        update["anyOf"] = [{"required": ["role"]}, {"required": ["max_concurrent_conversations"]}]
    label = schemas.get("LabelUpdate")
    if label is not None:  # at least one of them, not null
        label["anyOf"] = [{"required": [name], "properties": {name: {"type": "string"}}}
                          for name in ("name", "color")]  # fmt: skip
    weights = schemas.get("WeightsUpdate")
    if weights is not None:
        for weight in weights["properties"].values():
            weight["anyOf"][0].update(minimum=0, maximum=1)


def install_openapi(app: FastAPI) -> None:
    """Make `app.openapi()` include the middleware-level headers (cached like FastAPI's)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            _document_middleware_headers(document)
            _tighten_bodies(document.get("components", {}).get("schemas", {}))
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def openapi_document(app: FastAPI) -> dict[str, Any]:
    return app.openapi()


def render_yaml(document: dict[str, Any]) -> str:
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)
