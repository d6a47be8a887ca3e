"""One error path: every exception a request raises becomes the catalogue's error
(`domain.errors`), which `api.responses.render_api_error` renders as the error envelope.

- `ApiError` → itself.
- Routing 404/405 and oversized bodies → `NOT_FOUND` / `METHOD_NOT_ALLOWED` (with `Allow`) /
  `PAYLOAD_TOO_LARGE` (the Go service answered plain text).
- Request validation → 400 `BAD_REQUEST` (unparseable JSON, wrong JSON type, no body) or
  400 `VALIDATION_ERROR` with one `details` entry per failed rule
  (docs/decisions.md#validation-errors), after the identity and role checks.
- A lost or unreachable database, and conditions of the moment (too many connections, a
  read-only server after a failover, a lock wait past `lock_timeout`, a deadlock that failed
  again after its retry) → 503 `DB_UNAVAILABLE` with `Retry-After: 1`, never a 500 or a hang.
- PostgreSQL data exceptions → 400 `BAD_REQUEST`; integrity violations no service answered
  → 409 `CONFLICT`.
- Anything else is a bug: 500 `INTERNAL_ERROR`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from inbox_allocation.api import deps
from inbox_allocation.api.responses import render_api_error
from inbox_allocation.api.schemas.envelope import ErrorEnvelope
from inbox_allocation.db.pool import UNAVAILABLE_ERRORS
from inbox_allocation.domain.errors import (
    ApiError,
    BadRequest,
    ConcurrentChange,
    DatabaseUnavailable,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RequestTimeout,
    UnstorableValue,
    ValidationFailed,
)
from inbox_allocation.domain.ids import parse_uuid
from inbox_allocation.logging import get_logger

log = get_logger(__name__)

# Pydantic error types that mean "the JSON does not have the right shape or types" — the
# original's decoder failure (400 BAD_REQUEST) rather than a failed rule (VALIDATION_ERROR).
_SHAPE_ERRORS = frozenset({
    "json_invalid", "json_type", "model_type", "model_attributes_type", "dict_type",
    "uuid_parsing", "uuid_type", "string_type", "float_type", "float_parsing", "int_type",
    "int_parsing", "int_from_float", "bool_type", "bool_parsing", "list_type", "none_required",
    "datetime_type", "datetime_parsing", "datetime_from_date_parsing",
})  # fmt: skip


def _describe(error: dict[str, Any]) -> str:
    loc = [str(part) for part in error.get("loc", ()) if part not in ("body", "query", "path")]
    field = ".".join(loc)
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    return f"{field}: {message}" if field else message


def validation_error_to_api_error(errors: list[dict[str, Any]]) -> ApiError:
    for error in errors:
        loc = tuple(error.get("loc", ()))
        kind = error.get("type", "")
        if kind == "json_invalid":
            return BadRequest("request body is not valid JSON")
        if loc == ("body",) and kind == "missing":
            return BadRequest("request body is required")
        literal_of_wrong_type = kind == "literal_error" and not isinstance(error.get("input"), str)
        if loc and loc[0] == "body" and (kind in _SHAPE_ERRORS or literal_of_wrong_type):
            return BadRequest(f"invalid request body: {_describe(error)}")
    return ValidationFailed(details=[_describe(error) for error in errors])


def _guards(dependant: Dependant) -> set[Callable[..., object]]:
    calls: set[Callable[..., object]] = set()
    for sub in dependant.dependencies:
        if sub.call is not None:
            calls.add(sub.call)
        calls |= _guards(sub)
    return calls


async def identity_error(request: Request) -> ApiError | None:
    """The identity or role error a route would give, if any.

    FastAPI decodes a JSON body before it runs the route's dependencies, so a malformed body
    would otherwise be reported before a missing or foreign identity. The contract checks
    identity and role guards first (docs/decisions.md#check-order): this re-runs them for a request
    whose body failed.
    """
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or not request.url.path.startswith("/api/v1/"):
        return None
    guards = _guards(route.dependant)
    headers = request.headers
    try:
        identity = deps.read_identity(headers)
        callers = {deps.current_caller, deps.manager_caller, deps.admin_caller,
                   deps.self_or_admin_caller}  # fmt: skip
        if guards & callers:
            caller = await deps.verify_caller(identity, deps.db_of(request))
            if deps.admin_caller in guards:
                deps.require_admin(caller)
            elif deps.manager_caller in guards:
                deps.require_manager(caller)
            elif deps.self_or_admin_caller in guards:
                operator_id = str(request.path_params.get("operator_id", ""))
                deps.require_self_or_admin(caller, parse_uuid(operator_id))
    except ApiError as error:
        return error
    return None


def _allowed_methods(request: Request) -> str:
    """Every method some route serves at this path. Each method of a path is a route of its
    own, and Starlette's 405 names only the methods of the first route it matched."""
    matched = [r for r in request.app.state.api_routes if r.path_regex.match(request.url.path)]
    # A literal path wins over a template that would also match it (/labels/attach is not
    # the label "attach" of /labels/{id}).
    literal = [route for route in matched if "{" not in route.path]
    methods: set[str] = set()
    for route in literal or matched:
        methods |= route.methods
    return ", ".join(sorted(methods))


def _http_error(request: Request | None, exc: StarletteHTTPException) -> ApiError:
    if exc.status_code == 404:
        return NotFound("no route matches this path")
    if exc.status_code == 405:
        allow = (request and _allowed_methods(request)) or (exc.headers or {}).get("Allow", "")
        return MethodNotAllowed(headers={"Allow": allow})
    if exc.status_code == 413:
        return PayloadTooLarge()
    if exc.status_code == 408:
        return RequestTimeout()
    return BadRequest(str(exc.detail))


class _OutageLog:
    """At most one warning per second while the database is unreachable (an outage under
    load would otherwise write one line per request)."""

    interval = 1.0

    def __init__(self) -> None:
        self.last = 0.0
        self.suppressed = 0

    def warn(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self.last < self.interval:
            self.suppressed += 1
            return
        log.warning("database unavailable", error=f"{type(exc).__name__}: {exc}",
                    similar_since_last=self.suppressed)  # fmt: skip
        self.last, self.suppressed = now, 0


_outage_log = _OutageLog()


def as_api_error(exc: Exception, request: Request | None = None) -> ApiError:
    """The catalogue's error for any exception (`request` names a 405's methods)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, StarletteHTTPException):
        return _http_error(request, exc)
    if isinstance(exc, UNAVAILABLE_ERRORS):
        _outage_log.warn(exc)
        return DatabaseUnavailable()
    if isinstance(exc, asyncpg.DataError):
        log.info("data exception from PostgreSQL", error=f"{type(exc).__name__}: {exc}")
        return UnstorableValue()
    if isinstance(exc, asyncpg.IntegrityConstraintViolationError):
        log.warning("integrity violation", error=f"{type(exc).__name__}: {exc}")
        return ConcurrentChange()
    return ApiError()


async def _handle(request: Request, exc: Exception) -> Response:
    if isinstance(exc, RequestValidationError):
        error = await identity_error(request) or validation_error_to_api_error(list(exc.errors()))
    else:
        error = as_api_error(exc, request)
    bearer = request.app.state.settings.auth_mode != "headers"
    return render_api_error(error, challenge=bearer)


def install_error_handlers(app: FastAPI) -> None:
    handled = (ApiError, RequestValidationError, StarletteHTTPException, asyncpg.DataError,
               asyncpg.IntegrityConstraintViolationError, *UNAVAILABLE_ERRORS)  # fmt: skip
    for exc_type in handled:
        app.add_exception_handler(exc_type, _handle)


# Documented on every /api/v1 route: the envelope all errors share.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorEnvelope, "description": description}
    for status, description in {
        400: "Bad request, validation error or missing identity header",
        401: "Missing, malformed, unknown, revoked or expired credentials, or the operator "
        "does not belong to the tenant (UNAUTHORIZED)",
        403: "Role or subscription does not allow this",
        404: "Not found (other tenants' objects look the same)",
        409: "Conflict with the current state",
        422: "Idempotency key reused with a different request",
        503: "Database unavailable (DB_UNAVAILABLE); retry",
    }.items()
}
