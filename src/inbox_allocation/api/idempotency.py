"""Idempotency for every POST, PUT and DELETE under /api/v1 (docs/decisions.md#idempotency).

A pure ASGI middleware: it needs the raw request body (for the fingerprint) and the raw
response (to store it byte for byte), which FastAPI dependencies cannot see. The rules and
the storage live in `services.idempotency`.
"""

from __future__ import annotations

import asyncio
import re
from uuid import UUID

import orjson
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from inbox_allocation.api.responses import JSON_MEDIA_TYPE, dumps, error_body, render_api_error
from inbox_allocation.db.pool import RESERVATION, UNAVAILABLE_ERRORS
from inbox_allocation.domain.errors import (
    ApiError,
    DatabaseUnavailable,
    PayloadTooLarge,
    RequestTimeout,
    ValidationFailed,
)
from inbox_allocation.domain.ids import parse_uuid
from inbox_allocation.logging import get_logger
from inbox_allocation.observability.metrics import record_idempotent_replay
from inbox_allocation.services import idempotency as service

KEY_HEADERS = (b"idempotency-key", b"x-idempotency-key")
MAX_KEY_LENGTH = 255
# 1 to 255 printable ASCII characters, no space at either end (HTTP strips those anyway, so
# an all-blank key is an empty one). The same rule is declared in openapi.yaml.
KEY_PATTERN = re.compile(rb"[\x21-\x7e](?:[\x20-\x7e]{0,%d}[\x21-\x7e])?" % (MAX_KEY_LENGTH - 2))
KEY_RULE = (
    f"Idempotency-Key: 1 to {MAX_KEY_LENGTH} printable ASCII characters, no surrounding "
    "spaces, one value"
)
# The same rule as a JSON Schema pattern, for openapi.yaml.
KEY_SCHEMA_PATTERN = f"^[!-~]([ -~]{{0,{MAX_KEY_LENGTH - 2}}}[!-~])?$"
MAX_PATH_LENGTH = 255  # idempotency_keys.endpoint; longer paths match no route anyway
MUTATING_METHODS = frozenset({"POST", "PUT", "DELETE"})
REPLAY_HEADERS = [(b"idempotent-replayed", b"true"), (b"x-idempotency-replay", b"true")]
# Stored for the retries of a request whose writes committed but which failed before it could
# answer (e.g. the COMMIT's reply was lost): running it again would apply it twice.
APPLIED_RESPONSE_LOST = (
    409,
    "CONFLICT",
    "the request with this idempotency key was applied, but its response was lost; "
    "read the current state instead of retrying",
)

log = get_logger(__name__)


def _issues_a_secret(scope: Scope) -> bool:
    """POST …/operators/{id}/tokens answers with a new API token and POST /api/v1/webhooks
    with a new signing secret: storing that response for replay would keep the secret in the
    database. A retried creation makes a second token or webhook."""
    if scope["method"] != "POST":
        return False
    path: str = scope["path"]
    return path.endswith("/tokens") or path.rstrip("/") == "/api/v1/webhooks"


def _values(scope: Scope, names: tuple[bytes, ...]) -> list[bytes]:
    return [value for name, value in scope["headers"] if name in names]


class _BodyRefused(Exception):
    """The client went away before its body was complete."""


async def _read_body(receive: Receive) -> bytes:
    """The whole request body. Raises `_BodyRefused` when the client disconnects first, and
    the body limits' HTTPException(413) when it is too large, (408) when it is too slow."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise _BodyRefused()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _is_json(body: bytes) -> bool:
    if not body:
        return True  # routes without a body
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return True


def _key_and_identity(scope: Scope) -> Response | tuple[str, UUID, UUID] | None:
    """The key and the identity to scope it by; a 400 for a bad key; None when the request
    runs without idempotency (no key, or identity headers the route will refuse)."""
    # Idempotency-Key wins over the older X-Idempotency-Key when both are sent (each must be
    # valid); one of them repeated with different values is ambiguous and refused.
    current, older = _values(scope, (KEY_HEADERS[0],)), _values(scope, (KEY_HEADERS[1],))
    keys = current or older
    if not keys:
        return None
    sent = (current, older)
    if any(len(set(values)) > 1 for values in sent) or not all(
        KEY_PATTERN.fullmatch(value) for values in sent for value in values
    ):
        return render_api_error(ValidationFailed(details=[KEY_RULE]))
    tenants = _values(scope, (b"x-tenant-id",))
    operators = _values(scope, (b"x-operator-id",))
    if len(tenants) != 1 or len(operators) != 1:
        return None  # missing or repeated: the route answers 400
    tenant_id = parse_uuid(tenants[0].decode("latin-1"))
    operator_id = parse_uuid(operators[0].decode("latin-1"))
    if tenant_id is None or operator_id is None:
        return None  # the route's identity check answers 400
    return keys[0].decode("ascii"), tenant_id, operator_id


class IdempotencyMiddleware:
    """Reserve the key, run the request once, store its answer, replay it to retries.

    Nothing is reserved for a request that is refused before it runs: a body over the size
    limit (413), a client that disconnects mid-upload, a body that is not JSON (the route
    answers 400), missing, malformed or repeated identity headers (the route answers 400).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in MUTATING_METHODS
            or not scope["path"].startswith("/api/v1/")
            or len(scope["path"]) > MAX_PATH_LENGTH
            or _issues_a_secret(scope)
        ):
            await self.app(scope, receive, send)
            return
        checked = _key_and_identity(scope)
        if isinstance(checked, Response):
            await checked(scope, receive, send)
        elif checked is None:
            await self.app(scope, receive, send)
        else:
            await self._with_key(scope, receive, send, checked)

    async def _with_key(
        self, scope: Scope, receive: Receive, send: Send, checked: tuple[str, UUID, UUID]
    ) -> None:
        key, tenant_id, operator_id = checked
        try:
            body = await _read_body(receive)
        except _BodyRefused:
            return  # nobody is left to answer
        except HTTPException as exc:
            # The body limits (size, READ_TIMEOUT) refused it: answered, nothing reserved.
            if exc.status_code == 413:
                await render_api_error(PayloadTooLarge())(scope, receive, send)
            elif exc.status_code == 408:
                await render_api_error(RequestTimeout())(scope, receive, send)
            else:
                raise
            return

        body_sent = False

        async def replay_body() -> Message:
            nonlocal body_sent
            if body_sent:
                return {"type": "http.disconnect"}
            body_sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        if not _is_json(body):
            await self.app(scope, replay_body, send)  # answered 400 BAD_REQUEST, not stored
            return

        key_scope = service.Scope(tenant_id, operator_id, scope["method"], scope["path"], key)
        request_hash = service.fingerprint(
            scope["method"], scope["path"], scope["query_string"].decode("latin-1"), body
        )
        store = service.IdempotencyStore(
            scope["app"].state.db, scope["app"].state.settings.idempotency_ttl
        )
        try:
            outcome = await store.begin(key_scope, request_hash)
        except ApiError as error:
            await render_api_error(error)(scope, receive, send)
            return
        except UNAVAILABLE_ERRORS:
            await render_api_error(DatabaseUnavailable())(scope, receive, send)
            return

        if outcome is None:
            await self.app(scope, replay_body, send)
        elif isinstance(outcome, service.StoredResponse):
            record_idempotent_replay()
            await self._replay(outcome, send)
        else:
            await self._run_and_store(
                scope, replay_body, send, store=store, key_scope=key_scope, reservation=outcome
            )

    async def _run_and_store(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        store: service.IdempotencyStore,
        key_scope: service.Scope,
        reservation: service.Reservation,
    ) -> None:
        status = 500
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
            await send(message)

        status_code, code, message = APPLIED_RESPONSE_LOST
        applied = (status_code, dumps(error_body(code, message)))
        # Started before RESERVATION is set: the heartbeat is bookkeeping, not the request.
        heartbeat = asyncio.create_task(store.heartbeat(key_scope, reservation))
        token = RESERVATION.set((key_scope.tenant_id, reservation.row_id))
        try:
            await self.app(scope, receive, capture)
        except BaseException:
            status = 500
            raise
        finally:
            RESERVATION.reset(token)
            heartbeat.cancel()
            # Shielded: a cancelled request still settles its key before it goes.
            settle = self._settle(store, key_scope, reservation, status=status,
                                  body=b"".join(chunks), applied=applied)  # fmt: skip
            await asyncio.shield(settle)

    @staticmethod
    async def _settle(
        store: service.IdempotencyStore,
        key_scope: service.Scope,
        reservation: service.Reservation,
        *,
        status: int,
        body: bytes,
        applied: tuple[int, bytes],
    ) -> None:
        try:
            await store.complete(key_scope, reservation, status, body, applied=applied)
        except service.UNAVAILABLE as exc:
            # The database stayed unreachable for every attempt; a retry takes the
            # reservation over once its heartbeat is stale.
            log.warning("could not settle an idempotency key", status=status, error=str(exc))

    @staticmethod
    async def _replay(stored: service.StoredResponse, send: Send) -> None:
        headers = list(REPLAY_HEADERS)
        if stored.body:
            headers += [
                (b"content-type", JSON_MEDIA_TYPE.encode()),
                (b"content-length", str(len(stored.body)).encode()),
            ]
        await send({"type": "http.response.start", "status": stored.status, "headers": headers})
        await send({"type": "http.response.body", "body": stored.body})
