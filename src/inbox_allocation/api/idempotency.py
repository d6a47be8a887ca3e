"""Idempotency for every POST, PUT and DELETE under /api/v1 (docs/decisions.md#idempotency).

A pure ASGI middleware: it needs the raw request body (for the fingerprint) and the raw
response (to store it byte for byte), which FastAPI dependencies cannot see. The rules and
the storage live in `services.idempotency`.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from inbox_allocation.api.responses import JSON_MEDIA_TYPE, error_response
from inbox_allocation.db.pool import CONNECTION_ERRORS
from inbox_allocation.domain.errors import ApiError, DatabaseUnavailable
from inbox_allocation.domain.ids import parse_uuid
from inbox_allocation.logging import get_logger
from inbox_allocation.observability.metrics import record_idempotent_replay
from inbox_allocation.services import idempotency as service

KEY_HEADERS = (b"idempotency-key", b"x-idempotency-key")
MAX_KEY_LENGTH = 255
MAX_PATH_LENGTH = 255  # idempotency_keys.endpoint; longer paths match no route anyway
MUTATING_METHODS = frozenset({"POST", "PUT", "DELETE"})
REPLAY_HEADERS = [(b"idempotent-replayed", b"true"), (b"x-idempotency-replay", b"true")]

log = get_logger(__name__)


def _issues_a_secret(scope: Scope) -> bool:
    """POST …/operators/{id}/tokens answers with a new API token and POST /api/v1/webhooks
    with a new signing secret: storing that response for replay would keep the secret in the
    database. A retried creation makes a second token or webhook."""
    if scope["method"] != "POST":
        return False
    path: str = scope["path"]
    return path.endswith("/tokens") or path.rstrip("/") == "/api/v1/webhooks"


def _headers(scope: Scope) -> dict[bytes, bytes]:
    return dict(scope["headers"])


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


class IdempotencyMiddleware:
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
        headers = _headers(scope)
        raw_key = next((headers[name] for name in KEY_HEADERS if headers.get(name)), None)
        if raw_key is None:
            await self.app(scope, receive, send)
            return
        key = raw_key.decode("latin-1")
        if len(key) > MAX_KEY_LENGTH or not key.isprintable():
            response = error_response(
                400, "VALIDATION_ERROR", "validation failed",
                [f"Idempotency-Key: 1 to {MAX_KEY_LENGTH} printable characters"],
            )  # fmt: skip
            await response(scope, receive, send)
            return
        tenant_id = parse_uuid(headers.get(b"x-tenant-id", b"").decode("latin-1"))
        operator_id = parse_uuid(headers.get(b"x-operator-id", b"").decode("latin-1"))
        if tenant_id is None or operator_id is None:
            # The route's identity check answers (400/401); nothing to remember.
            await self.app(scope, receive, send)
            return

        body = await _read_body(receive)
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
            await error_response(error.status, error.code, error.message)(scope, receive, send)
            return
        except CONNECTION_ERRORS:
            unavailable = DatabaseUnavailable()
            response = error_response(unavailable.status, unavailable.code, unavailable.message)
            await response(scope, receive, send)
            return

        body_sent = False

        async def replay_body() -> Message:
            nonlocal body_sent
            if body_sent:
                return {"type": "http.disconnect"}
            body_sent = True
            return {"type": "http.request", "body": body, "more_body": False}

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

        try:
            await self.app(scope, receive, capture)
        except BaseException:
            await self._forget(store, key_scope, reservation)
            raise
        try:
            await store.complete(key_scope, reservation, status, b"".join(chunks))
        except CONNECTION_ERRORS as exc:
            # The response is already sent; the unfinished reservation is taken over by a
            # retry once it is considered abandoned.
            log.warning("could not store an idempotent response", error=str(exc))

    @staticmethod
    async def _forget(
        store: service.IdempotencyStore,
        key_scope: service.Scope,
        reservation: service.Reservation,
    ) -> None:
        try:
            await store.release(key_scope, reservation)
        except CONNECTION_ERRORS as exc:
            log.warning("could not release an idempotency reservation", error=str(exc))

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
