"""POST /api/v1/allocate and /api/v1/claim: conversations to operators."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.responses import Response

from inbox_allocation.api.deps import CallerDep, IdentityDep, clock_of, provider
from inbox_allocation.api.errors import ERROR_RESPONSES
from inbox_allocation.api.responses import ok
from inbox_allocation.api.routing import api_router
from inbox_allocation.api.schemas.conversations import Allocation, render_allocation
from inbox_allocation.api.schemas.envelope import Envelope
from inbox_allocation.api.schemas.lifecycle import ConversationRef
from inbox_allocation.services.allocation import AllocationService

router = api_router(prefix="/api/v1", tags=["allocation"])


ServiceDep = Annotated[AllocationService, Depends(provider(AllocationService, clock=clock_of))]


@router.post(
    "/allocate",
    response_model=Envelope[Allocation],
    responses=ERROR_RESPONSES,
    summary="Allocate the next conversation to the caller",
    description=(
        "Atomically assigns the QUEUED conversation of the caller's subscribed inboxes whose "
        "priority is highest at this instant (ties: longest waiting, then id). The caller must "
        "be AVAILABLE and under its capacity (409 CAPACITY_REACHED). Any request body is "
        "ignored. Idempotent with an Idempotency-Key header."
    ),
)
async def allocate(identity: IdentityDep, service: ServiceDep) -> Response:
    # The allocation statement itself verifies the operator's membership and status (one
    # round trip), so only the identity headers are parsed here.
    row = await service.allocate_next(
        tenant_id=identity.tenant_id, operator_id=identity.operator_id
    )
    return ok(render_allocation(row))


@router.post(
    "/claim",
    response_model=Envelope[Allocation],
    responses=ERROR_RESPONSES,
    summary="Claim a specific QUEUED conversation",
    description=(
        "The caller must be AVAILABLE and subscribed to the conversation's inbox. Claiming "
        "one's own allocated conversation again returns it (200). Another operator's or a "
        "resolved conversation → 409 CONVERSATION_NOT_QUEUED; a conversation being claimed "
        "concurrently → 409 CONVERSATION_ALREADY_CLAIMED."
    ),
)
async def claim(caller: CallerDep, service: ServiceDep, body: ConversationRef) -> Response:
    row = await service.claim(
        tenant_id=caller.tenant_id,
        operator_id=caller.operator_id,
        conversation_id=body.conversation_id,
    )
    return ok(render_allocation(row))
