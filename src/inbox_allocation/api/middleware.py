"""Pure ASGI middleware (no per-request Request objects: they sit on every hot path).

Order, outermost first: request context (id, trace ids, access log, request metrics,
last-resort 500) → CORS (when configured) → body-size limit → JSON bodies → authentication
(api.auth) → idempotency → the application.
The request context is outermost so that every response (preflights, 413s, replays and
500s included) carries its ids and is counted in the metrics.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uuid_utils import uuid7

from inbox_allocation.api.errors import as_api_error
from inbox_allocation.api.responses import render_api_error
from inbox_allocation.db.pool import TENANT
from inbox_allocation.domain.errors import ApiError, PayloadTooLarge
from inbox_allocation.logging import get_logger
from inbox_allocation.observability.metrics import RequestMetrics
from inbox_allocation.observability.tracing import TRACEPARENT_HEADER, start_request_trace

access_log = get_logger("inbox_allocation.access")
log = get_logger(__name__)

MAX_BODY_BYTES = 1024 * 1024  # docs/decisions.md#body-parsing


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


class RequestContextMiddleware:
    """Request and trace ids in and out, one access-log line and one metrics sample per
    request, and the 500 safety net.

    The request id is the incoming X-Correlation-ID, else X-Request-ID, else a new UUIDv7;
    both headers carry it on every response (errors, preflights and replays included). The
    trace continues an incoming W3C `traceparent` (or starts one) and the response carries
    `traceparent` with this request's span (observability.tracing). request_id, trace_id and
    span_id are bound to every log line written while the request runs. With `metrics`, the
    request's count and duration are recorded by route template and status.
    """

    def __init__(self, app: ASGIApp, metrics: RequestMetrics | None = None) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = (
            _header(scope, b"x-correlation-id") or _header(scope, b"x-request-id") or str(uuid7())
        )
        trace = start_request_trace(_header(scope, TRACEPARENT_HEADER))
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                headers = MutableHeaders(scope=message)
                headers["X-Request-ID"] = request_id
                headers["X-Correlation-ID"] = request_id
                headers["traceparent"] = trace.traceparent
            await send(message)

        # Fresh log context per request; dependencies add tenant and operator to it (and
        # set the tenant its database connections count against).
        structlog.contextvars.clear_contextvars()
        TENANT.set(None)
        structlog.contextvars.bind_contextvars(
            request_id=request_id, trace_id=trace.trace_id, span_id=trace.span_id
        )
        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            # Raised outside the routes' handlers (e.g. a database failure in a middleware):
            # the same conversion and rendering as theirs.
            error = as_api_error(exc)
            if type(error) is ApiError:  # not in the catalogue: a bug
                log.exception("unhandled error", method=scope["method"], path=scope["path"])
            if response_started:
                raise
            await render_api_error(error)(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            access_log.info(
                "request",
                method=scope["method"],
                path=scope["path"],
                status=status,
                duration_ms=round(elapsed * 1000, 2),
            )
            if self.metrics is not None:
                self.metrics.observe(scope, status, elapsed)


class CorsMiddleware:
    """CORS for the origins in CORS_ALLOWED_ORIGINS (installed only when that list is not
    empty; `*` allows every origin). A request from any other origin, or without one, gets no
    Access-Control-Allow-* headers, so a browser keeps other sites' pages from reading or
    driving the API.

    A preflight (`OPTIONS` with Origin and Access-Control-Request-Method) from an allowed
    origin is answered here: 204 with the CORS headers, no credentials needed. Other
    responses to an allowed origin name it in Access-Control-Allow-Origin.
    """

    ALLOW_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
    ALLOW_HEADERS = (
        "Accept, Authorization, Content-Type, X-Tenant-ID, X-Operator-ID, X-Request-ID, "
        "X-Correlation-ID, Idempotency-Key, X-Idempotency-Key, traceparent, tracestate"
    )
    EXPOSE_HEADERS = (
        "X-Request-ID, X-Correlation-ID, Idempotent-Replayed, X-Idempotency-Replay, traceparent"
    )

    def __init__(self, app: ASGIApp, origins: tuple[str, ...]) -> None:
        self.app = app
        self.any_origin = "*" in origins
        self.origins = frozenset(origins)

    def _allowed(self, origin: str | None) -> str | None:
        """The Access-Control-Allow-Origin value for this Origin, or None."""
        if origin is None:
            return None
        if self.any_origin:
            return "*"
        return origin if origin in self.origins else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        allow_origin = self._allowed(_header(scope, b"origin"))
        preflight = (
            scope["method"] == "OPTIONS"
            and _header(scope, b"access-control-request-method") is not None
        )
        if allow_origin is not None and preflight:
            await send(
                {
                    "type": "http.response.start",
                    "status": 204,
                    "headers": [
                        (b"access-control-allow-origin", allow_origin.encode("latin-1")),
                        (b"access-control-allow-methods", self.ALLOW_METHODS.encode()),
                        (b"access-control-allow-headers", self.ALLOW_HEADERS.encode()),
                        (b"access-control-expose-headers", self.EXPOSE_HEADERS.encode()),
                        (b"access-control-max-age", b"86400"),
                        (b"vary", b"Origin"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if allow_origin is not None:
                    headers["Access-Control-Allow-Origin"] = allow_origin
                    headers["Access-Control-Expose-Headers"] = self.EXPOSE_HEADERS
                # The answer depends on Origin: caches must not serve one origin's to another.
                headers.add_vary_header("Origin")
            await send(message)

        await self.app(scope, receive, send_with_cors)


class JsonBodyMiddleware:
    """Treat every /api/v1 request body as JSON, whatever its Content-Type says.

    The original never looked at Content-Type (docs/decisions.md#body-parsing) and existing clients
    (e.g. `curl -d '{…}'`, which sends a form content type) rely on that; FastAPI only parses
    bodies declared as JSON, so the declaration is normalised here.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] in ("POST", "PUT", "PATCH", "DELETE")
            and scope["path"].startswith("/api/v1/")
        ):
            headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
            headers.append((b"content-type", b"application/json"))
            # In place, not a copy: the router records the matched route in this scope and the
            # request-context middleware reads it from there (the metrics' route label).
            scope["headers"] = headers
        await self.app(scope, receive, send)


class BodySizeLimitMiddleware:
    """Refuse request bodies over 1 MiB with 413 `PAYLOAD_TOO_LARGE`, and bodies not received
    within READ_TIMEOUT (from the first read of the body) with 408 `REQUEST_TIMEOUT`, so a
    client that trickles its body cannot hold a request (and its worker's memory) open.

    A declared Content-Length is checked up front; a chunked body is counted as it streams.
    (Reading the request line and headers is uvicorn's, before any middleware runs: bound
    that on the gateway.)
    """

    def __init__(
        self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES, read_timeout: float | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.read_timeout = read_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await render_api_error(PayloadTooLarge())(scope, receive, send)
            return
        received = 0
        deadline: float | None = None
        complete = False

        async def counting_receive() -> Message:
            nonlocal received, deadline, complete
            if complete or self.read_timeout is None:
                message: dict[str, Any] = dict(await receive())
            else:
                loop = asyncio.get_running_loop()
                if deadline is None:
                    deadline = loop.time() + self.read_timeout
                try:
                    async with asyncio.timeout_at(deadline):
                        message = dict(await receive())
                except TimeoutError:
                    # Rendered as the 408 envelope by the HTTPException handler (and by the
                    # idempotency middleware, which reads keyed bodies itself).
                    raise HTTPException(408) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                complete = not message.get("more_body", False)
                if received > self.max_bytes:
                    # Rendered as the 413 envelope by the HTTPException handler.
                    raise HTTPException(413)
            return message

        await self.app(scope, counting_receive, send)
