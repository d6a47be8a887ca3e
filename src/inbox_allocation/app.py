"""The FastAPI application: `create_app()` wires settings, middleware, routers and lifespan.

Lifespan (contract §8): database pool with retries → background workers → serve. On
shutdown uvicorn first stops accepting and drains in-flight requests, then this lifespan stops
the workers and closes the pool; the CLI stops the embedded database last.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from inbox_allocation import __version__
from inbox_allocation.api.errors import install_error_handlers
from inbox_allocation.api.idempotency import IdempotencyMiddleware
from inbox_allocation.api.middleware import (
    BodySizeLimitMiddleware,
    CorsMiddleware,
    JsonBodyMiddleware,
    RequestContextMiddleware,
)
from inbox_allocation.api.routers import (
    allocation,
    conversations,
    docs,
    health,
    inboxes,
    labels,
    lifecycle,
    operator_status,
    operators,
    tenant,
)
from inbox_allocation.config import Settings, load_settings
from inbox_allocation.db.pool import Database, create_pool
from inbox_allocation.logging import configure_logging, get_logger
from inbox_allocation.workers import BackgroundWorkers

log = get_logger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await create_pool(settings)
        app.state.db = Database(pool)
        workers = BackgroundWorkers(app.state.db, settings)
        workers.start()
        try:
            yield
        finally:
            await workers.stop()
            await pool.close()
            log.info("shutdown complete")

    app = FastAPI(
        title="Inbox Allocation Service",
        version=__version__,
        description=(
            "Routes customer conversations arriving on a tenant's phone-number inboxes to "
            "human operators. Every `/api/v1` route needs `X-Tenant-ID` and `X-Operator-ID`."
        ),
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        # Only the contract's listed paths accept a trailing slash (declared on their routes);
        # everything else matches exactly, so no redirects.
        redirect_slashes=False,
    )
    app.state.settings = settings
    install_error_handlers(app)
    for module in (health, docs, operator_status, inboxes, operators, tenant, conversations,
                   allocation, lifecycle, labels):  # fmt: skip
        app.include_router(module.router)
    # Added innermost first: the request context wraps everything, including CORS answers.
    app.add_middleware(IdempotencyMiddleware)
    app.add_middleware(JsonBodyMiddleware)
    app.add_middleware(BodySizeLimitMiddleware)
    app.add_middleware(CorsMiddleware)
    app.add_middleware(RequestContextMiddleware)
    return app


def create_app_from_env() -> FastAPI:
    """Entry point for uvicorn worker processes (`--factory`): settings from the environment."""
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)
