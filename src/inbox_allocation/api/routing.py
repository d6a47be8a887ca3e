"""The route class of every /api/v1 router: one retry of an interrupted transaction.

When PostgreSQL drops a connection in the middle of a transaction (a backend killed, a
failover), the transaction is rolled back and `Database.transaction()` raises
`TransactionInterrupted`. Nothing was applied, so the endpoint runs once more on a fresh
connection; a second failure is answered 503 DB_UNAVAILABLE. Failures with an unknown
outcome (during COMMIT, or a single autocommit statement) are never retried.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

from inbox_allocation.db.pool import TransactionInterrupted
from inbox_allocation.logging import get_logger

log = get_logger(__name__)


class RetryInterruptedRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def retry_once(request: Request) -> Response:
            try:
                return await handler(request)
            except TransactionInterrupted:
                log.warning("transaction interrupted by a lost connection; retrying once")
                return await handler(request)

        return retry_once


def api_router(**options: Any) -> APIRouter:
    """An APIRouter whose routes retry an interrupted transaction once."""
    return APIRouter(route_class=RetryInterruptedRoute, **options)
