"""The FastAPI application: `create_app()` wires settings, middleware, routers and lifespan.

Lifespan: database pool with retries → background workers → serve. On
shutdown uvicorn first stops accepting and drains in-flight requests, then this lifespan stops
the workers and closes the pool; the CLI stops the embedded database last.

Middleware, outermost first: request context (request and trace ids, access log, request
metrics, last-resort 500) → CORS (only with CORS_ALLOWED_ORIGINS) → body-size limit → JSON
bodies → authentication (AUTH_MODE) → idempotency → routes. GET /metrics (unless
METRICS_ENABLED=false) sits beside the routes, outside /api/v1.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.routing import APIRoute

from inbox_allocation import __version__
from inbox_allocation.api.auth import AuthenticationMiddleware
from inbox_allocation.api.errors import install_error_handlers
from inbox_allocation.api.idempotency import IdempotencyMiddleware
from inbox_allocation.api.middleware import (
    BodySizeLimitMiddleware,
    CorsMiddleware,
    JsonBodyMiddleware,
    RequestContextMiddleware,
)
from inbox_allocation.api.openapi import install_openapi
from inbox_allocation.api.routers import (
    allocation,
    console,
    conversations,
    docs,
    events,
    health,
    inboxes,
    labels,
    lifecycle,
    operator_status,
    operators,
    stats,
    tenant,
    tokens,
    webhooks,
)
from inbox_allocation.config import Settings, load_settings
from inbox_allocation.db.pool import Database, create_pool
from inbox_allocation.logging import configure_logging, get_logger
from inbox_allocation.observability import metrics, tracing
from inbox_allocation.services.event_hub import EventHub
from inbox_allocation.services.jwt_auth import JwtVerifier
from inbox_allocation.workers import BackgroundWorkers

log = get_logger(__name__)


# The order of the documentation (routes are registered hot paths first).
OPENAPI_TAGS = [
    {"name": "health", "description": "Probes and build information (no identity headers)."},
    {"name": "operator status", "description": "The caller's availability and load."},
    {"name": "inboxes", "description": "A tenant's phone-number inboxes (managers)."},
    {"name": "subscriptions", "description": "Which operators serve which inboxes."},
    {"name": "operators", "description": "A tenant's operators, roles and capacity (admins)."},
    {"name": "tokens", "description": "API tokens of an operator (AUTH_MODE=token)."},
    {"name": "tenant", "description": "The tenant and its priority weights (admins)."},
    {"name": "conversations", "description": "Ingestion, listing, search."},
    {"name": "allocation", "description": "Conversations to operators: allocate, claim."},
    {"name": "lifecycle", "description": "Resolve, deallocate, reassign, move."},
    {"name": "labels", "description": "Per-inbox labels and their attachments."},
    {"name": "stats", "description": "Queue statistics (managers)."},
    {"name": "events", "description": "The event stream: SSE and long-polled pages."},
    {"name": "webhooks", "description": "Events pushed to HTTP endpoints (admins)."},
]


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await create_pool(settings)
        app.state.db = Database(pool, settings.tenant_connection_limit)
        workers = BackgroundWorkers(app.state.db, settings)
        workers.start()
        # The process's one event listener (GET /api/v1/events readers wait on it).
        app.state.event_hub = EventHub(settings.dsn)
        app.state.event_hub.start()
        pool_sampler = (
            metrics.start_pool_sampler(app.state.db) if settings.metrics_enabled else None
        )
        # Start-up objects live as long as the process: keep them out of the cyclic GC's
        # scans, and collect the young generation less often (a request's objects are freed
        # by reference counting; cycles are rare). Measured: the GC was ~4 % of a worker's
        # samples under load.
        gc.freeze()
        gc.set_threshold(20_000, 20, 20)
        try:
            yield
        finally:
            if pool_sampler is not None:
                await pool_sampler.stop()
            await app.state.event_hub.stop()
            await workers.stop()
            await pool.close()
            log.info("shutdown complete")

    exporting = tracing.configure_tracing(settings.otel_exporter_otlp_endpoint)
    app = FastAPI(
        title="Inbox Allocation Service",
        version=__version__,
        description=(
            "Routes customer conversations arriving on a tenant's phone-number inboxes to "
            "human operators. Every `/api/v1` caller is identified by `X-Tenant-ID` and "
            "`X-Operator-ID` (AUTH_MODE=headers) or by `Authorization: Bearer` with an API "
            "token (AUTH_MODE=token) or a JWT (AUTH_MODE=jwt): use **Authorize**."
        ),
        lifespan=lifespan,
        openapi_tags=OPENAPI_TAGS,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        # Only the contract's listed paths accept a trailing slash (declared on their routes);
        # everything else matches exactly, so no redirects.
        redirect_slashes=False,
        # FastAPI's own OpenTelemetry spans: only when an exporter is installed
        # (OTEL_EXPORTER_OTLP_ENDPOINT), never for probes and scrapes.
        telemetry=tracing.fastapi_telemetry(exporting),
    )
    app.state.settings = settings
    install_error_handlers(app)
    install_openapi(app)
    # Routes are matched in order: the hot paths (allocation, lifecycle) first.
    modules = (allocation, lifecycle, conversations, operator_status, labels, health, inboxes,
               operators, tokens, tenant, stats, events, webhooks, docs, console)  # fmt: skip
    for module in modules:
        app.include_router(module.router)
    # Every (path, methods) pair, for the Allow header of a 405 (api/errors.py).
    app.state.api_routes = [
        route for module in modules for route in module.router.routes if isinstance(route, APIRoute)
    ]
    request_metrics = None
    if settings.metrics_enabled:
        api_routes = [route for module in modules for route in module.router.routes]
        token = settings.metrics_bearer_token
        request_metrics = metrics.install(
            app, api_routes, token.get_secret_value() if token else None
        )
    # Added innermost first: the request context wraps everything, including CORS answers.
    app.add_middleware(IdempotencyMiddleware)
    if settings.auth_mode != "headers":  # headers mode: the routes read the identity headers
        app.add_middleware(
            AuthenticationMiddleware,
            mode=settings.auth_mode,
            jwt_verifier=_jwt_verifier(settings),
        )
    app.add_middleware(JsonBodyMiddleware)
    app.add_middleware(BodySizeLimitMiddleware, read_timeout=settings.read_timeout.total_seconds())
    if settings.cors_origins:
        app.add_middleware(CorsMiddleware, origins=settings.cors_origins)
    app.add_middleware(RequestContextMiddleware, metrics=request_metrics)
    return app


def _jwt_verifier(settings: Settings) -> JwtVerifier | None:
    if settings.auth_mode != "jwt":
        return None
    # Both checked by the settings.
    assert settings.jwt_issuer is not None
    assert settings.jwt_audience is not None
    return JwtVerifier(
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        tenant_claim=settings.jwt_tenant_claim,
        operator_claim=settings.jwt_operator_claim,
        jwks_file=settings.jwt_jwks_file,
        jwks_url=settings.jwt_jwks_url,
    )


def create_app_from_env() -> FastAPI:
    """Entry point for uvicorn worker processes (`--factory`): settings from the environment."""
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)
