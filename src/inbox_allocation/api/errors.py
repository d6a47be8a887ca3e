"""Exception handlers: every failure leaves as the contract's JSON error envelope.

- `ApiError` (the one hierarchy in `domain.errors`) → its status and code.
- Routing 404/405 and oversized bodies → `NOT_FOUND` / `METHOD_NOT_ALLOWED` /
  `PAYLOAD_TOO_LARGE` (the Go service answered plain text).
- Request validation → 400 `BAD_REQUEST` (unparseable JSON, wrong JSON type, no body) or
  400 `VALIDATION_ERROR` with one `details` entry per failed rule
  (docs/decisions.md#validation-errors).
- A lost or unreachable database, and conditions of the moment (too many connections, a
  read-only server after a failover, a lock wait past `lock_timeout`, a deadlock that failed
  again after its retry) → 503 `DB_UNAVAILABLE` with `Retry-After: 1`, never a 500 or a hang.
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
from inbox_allocation.api.responses import error_response
from inbox_allocation.api.schemas.envelope import ErrorEnvelope
from inbox_allocation.db.pool import UNAVAILABLE_ERRORS
from inbox_allocation.domain.errors import (
    ApiError,
    BadRequest,
    DatabaseUnavailable,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RequestTimeout,
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


# Every 503 tells the client when to try again.
RETRY_AFTER = {"Retry-After": "1"}


def _challenge(request: Request, status: int) -> dict[str, str] | None:
    """With bearer credentials (AUTH_MODE token or jwt) every 401 names the scheme."""
    if status == 401 and request.app.state.settings.auth_mode != "headers":
        return {"WWW-Authenticate": "Bearer"}
    return None


def render_api_error(exc: ApiError, headers: dict[str, str] | None = None) -> Response:
    if exc.status == 503:
        headers = RETRY_AFTER
    return error_response(exc.status, exc.code, exc.message, exc.details, headers=headers)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return render_api_error(exc, _challenge(request, exc.status))


async def _request_validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    api_error = await identity_error(request) or validation_error_to_api_error(list(exc.errors()))
    return error_response(
        api_error.status, api_error.code, api_error.message, api_error.details,
        headers=_challenge(request, api_error.status),
    )  # fmt: skip


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


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers or {})
    error: ApiError
    if exc.status_code == 404:
        error = NotFound("no route matches this path")
    elif exc.status_code == 405:
        error = MethodNotAllowed()
        headers["Allow"] = _allowed_methods(request) or headers.get("Allow", "")
    elif exc.status_code == 413:
        error = PayloadTooLarge()
    elif exc.status_code == 408:
        error = RequestTimeout()
    else:
        error = ApiError(str(exc.detail))
        error.status, error.code = exc.status_code, "BAD_REQUEST"
    return error_response(error.status, error.code, error.message, headers=headers)


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


async def _database_unavailable(request: Request, exc: Exception) -> Response:
    _outage_log.warn(exc)
    return render_api_error(DatabaseUnavailable())


async def _data_exception(_: Request, exc: Exception) -> Response:
    # SQLSTATE class 22 (e.g. a NUL byte in text, a value out of range): bad input that
    # slipped past validation; the client's fault, never a 500.
    log.info("data exception from PostgreSQL", error=f"{type(exc).__name__}: {exc}")
    return error_response(400, "BAD_REQUEST", "a value in the request cannot be stored")


async def _integrity_violation(_: Request, exc: Exception) -> Response:
    # SQLSTATE class 23 that no service turned into a specific answer: a concurrent change
    # (e.g. a row deleted meanwhile) — a conflict, not a server error.
    log.warning("integrity violation", error=f"{type(exc).__name__}: {exc}")
    return error_response(409, "CONFLICT", "the request conflicts with a concurrent change")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _request_validation)
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(asyncpg.DataError, _data_exception)
    app.add_exception_handler(asyncpg.IntegrityConstraintViolationError, _integrity_violation)
    for exc_type in UNAVAILABLE_ERRORS:
        app.add_exception_handler(exc_type, _database_unavailable)


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
