"""POST /api/v1/resolve, /deallocate, /reassign, /move_inbox."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.responses import Response

from inbox_allocation.api.deps import CallerDep, provider
from inbox_allocation.api.errors import ERROR_RESPONSES
from inbox_allocation.api.responses import ok
from inbox_allocation.api.routing import api_router
from inbox_allocation.api.schemas.conversations import Lifecycle, render_conversation
from inbox_allocation.api.schemas.envelope import Envelope
from inbox_allocation.api.schemas.lifecycle import (
    ConversationRef,
    MoveInboxRequest,
    ReassignRequest,
)
from inbox_allocation.services.lifecycle import LifecycleService

router = api_router(prefix="/api/v1", tags=["lifecycle"])


ServiceDep = Annotated[LifecycleService, Depends(provider(LifecycleService))]
RESPONSE = Envelope[Lifecycle]


@router.post(
    "/resolve",
    response_model=RESPONSE,
    responses=ERROR_RESPONSES,
    summary="Resolve a conversation (assignee or manager)",
)
async def resolve(caller: CallerDep, service: ServiceDep, body: ConversationRef) -> Response:
    row = await service.resolve(
        tenant_id=caller.tenant_id,
        operator_id=caller.operator_id,
        manager=caller.is_manager_level,
        conversation_id=body.conversation_id,
    )
    return ok(render_conversation(row))


@router.post(
    "/deallocate",
    response_model=RESPONSE,
    responses=ERROR_RESPONSES,
    summary="Return an allocated conversation to the queue (manager)",
)
async def deallocate(caller: CallerDep, service: ServiceDep, body: ConversationRef) -> Response:
    row = await service.deallocate(
        tenant_id=caller.tenant_id,
        manager=caller.is_manager_level,
        conversation_id=body.conversation_id,
    )
    return ok(render_conversation(row))


@router.post(
    "/reassign",
    response_model=RESPONSE,
    responses=ERROR_RESPONSES,
    summary="Give an allocated conversation to another operator (manager)",
)
async def reassign(caller: CallerDep, service: ServiceDep, body: ReassignRequest) -> Response:
    row = await service.reassign(
        tenant_id=caller.tenant_id,
        manager=caller.is_manager_level,
        conversation_id=body.conversation_id,
        target_operator_id=body.operator_id,
    )
    return ok(render_conversation(row))


@router.post(
    "/move_inbox",
    response_model=RESPONSE,
    responses=ERROR_RESPONSES,
    summary="Move a conversation to another inbox of the tenant (manager)",
)
async def move_inbox(caller: CallerDep, service: ServiceDep, body: MoveInboxRequest) -> Response:
    row = await service.move_to_inbox(
        tenant_id=caller.tenant_id,
        manager=caller.is_manager_level,
        conversation_id=body.conversation_id,
        target_inbox_id=body.inbox_id,
    )
    return ok(render_conversation(row))
