"""GET /api/v1/stats — queue statistics per inbox of the caller's tenant. Manager-level."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.responses import Response

from inbox_allocation.api.deps import ManagerDep, provider
from inbox_allocation.api.errors import ERROR_RESPONSES
from inbox_allocation.api.responses import ok
from inbox_allocation.api.routing import api_router
from inbox_allocation.api.schemas.envelope import Envelope
from inbox_allocation.api.schemas.stats import QueueStats
from inbox_allocation.services.stats import StatsService

router = api_router(prefix="/api/v1", tags=["stats"])


ServiceDep = Annotated[StatsService, Depends(provider(StatsService))]


@router.get(
    "/stats",
    response_model=Envelope[QueueStats],
    responses=ERROR_RESPONSES,
    summary="Queue statistics per inbox",
    description=(
        "For every inbox of the tenant: `queued` and `allocated` conversations, "
        "`oldest_queued_wait_seconds` (now − the oldest `last_message_at` among the QUEUED "
        "ones, null when none) and `available_operators` (subscribed and AVAILABLE). One "
        "query, whatever the number of inboxes. MANAGER or ADMIN only."
    ),
)
async def get_stats(caller: ManagerDep, service: ServiceDep) -> Response:
    return ok({"inboxes": await service.inbox_stats(tenant_id=caller.tenant_id)})
