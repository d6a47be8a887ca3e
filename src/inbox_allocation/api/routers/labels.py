"""Labels: /api/v1/labels CRUD and attaching labels to conversations.

Check order per route (contract): identity → path id (400 INVALID_PATH) → body (400
BAD_REQUEST) → validation (400 VALIDATION_ERROR) → role (403 LABEL_PERMISSION_DENIED) →
lookups (404) → conflicts (409). The path id is parsed by a dependency so it is checked
before the body is validated.
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import Depends, Path, Query
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from inbox_allocation.api.deps import CallerDep, provider
from inbox_allocation.api.errors import ERROR_RESPONSES
from inbox_allocation.api.params import parse_id
from inbox_allocation.api.responses import no_content, ok
from inbox_allocation.api.routing import api_router
from inbox_allocation.api.schemas.envelope import Envelope
from inbox_allocation.api.schemas.labels import Label, LabelAttachment, LabelCreate, LabelUpdate
from inbox_allocation.db.seed_ids import HOT_LEAD, INBOX_SALES
from inbox_allocation.domain.errors import InvalidPath, InvalidQuery
from inbox_allocation.services.labels import LabelService

router = api_router(prefix="/api/v1", tags=["labels"])


ServiceDep = Annotated[LabelService, Depends(provider(LabelService))]


async def label_id_path(
    id: Annotated[str, Path(description="Label UUID", examples=[HOT_LEAD])],
) -> UUID:
    if id in ("attach", "detach"):
        # /labels/attach and /labels/detach are routes of their own (POST only): another
        # method on them is 405, not a malformed label id.
        raise StarletteHTTPException(405, headers={"Allow": "POST"})
    return parse_id(id, "label id", InvalidPath)


LabelIdDep = Annotated[UUID, Depends(label_id_path)]


@router.post(
    "/labels",
    status_code=201,
    response_model=Envelope[Label],
    responses=ERROR_RESPONSES,
    summary="Create a label in an inbox (MANAGER/ADMIN)",
    description=(
        "403 LABEL_PERMISSION_DENIED for role OPERATOR; 404 INBOX_NOT_FOUND; 409 "
        "LABEL_NAME_CONFLICT when the inbox already has a label of that (trimmed) name."
    ),
)
@router.post("/labels/", status_code=201, include_in_schema=False)
async def create_label(caller: CallerDep, service: ServiceDep, body: LabelCreate) -> Response:
    row = await service.create(
        tenant_id=caller.tenant_id,
        operator_id=caller.operator_id,
        role=caller.role,
        inbox_id=body.inbox_id,
        name=body.name,
        color=body.color,
    )
    return ok(dict(row), status_code=201)


@router.get(
    "/labels",
    response_model=Envelope[list[Label]],
    responses=ERROR_RESPONSES,
    summary="The labels of an inbox, ordered by name",
    description=(
        "`data` is a bare array. 400 INVALID_QUERY without a valid `inbox_id`; 404 "
        "INBOX_NOT_FOUND; 403 LABEL_PERMISSION_DENIED for an OPERATOR not subscribed to it."
    ),
)
@router.get("/labels/", include_in_schema=False)
async def list_labels(
    caller: CallerDep,
    service: ServiceDep,
    inbox_id: Annotated[
        str | None, Query(description="Inbox UUID (required)", examples=[INBOX_SALES])
    ] = None,
) -> Response:
    if not inbox_id:
        raise InvalidQuery("inbox_id is required")
    parsed = parse_id(inbox_id, "inbox_id", InvalidQuery)
    rows = await service.list_for_inbox(
        tenant_id=caller.tenant_id,
        operator_id=caller.operator_id,
        role=caller.role,
        inbox_id=parsed,
    )
    return ok([dict(row) for row in rows])


@router.put(
    "/labels/{id}",
    response_model=Envelope[Label],
    responses=ERROR_RESPONSES,
    summary="Rename or recolour a label (MANAGER/ADMIN)",
    description="At least one of `name` and `color`; null = unchanged. 409 "
    "LABEL_NAME_CONFLICT when another label of the inbox has the new name.",
)
async def update_label(
    caller: CallerDep, label_id: LabelIdDep, service: ServiceDep, body: LabelUpdate
) -> Response:
    row = await service.update(
        tenant_id=caller.tenant_id,
        role=caller.role,
        label_id=label_id,
        name=body.name,
        color=body.color,
    )
    return ok(dict(row))


@router.delete(
    "/labels/{id}",
    status_code=204,
    response_model=None,
    responses=ERROR_RESPONSES,
    summary="Delete a label and its attachments (MANAGER/ADMIN)",
)
async def delete_label(caller: CallerDep, label_id: LabelIdDep, service: ServiceDep) -> Response:
    await service.delete(tenant_id=caller.tenant_id, role=caller.role, label_id=label_id)
    return no_content()


@router.post(
    "/labels/attach",
    status_code=204,
    response_model=None,
    responses=ERROR_RESPONSES,
    summary="Attach a label to a conversation (idempotent)",
    description=(
        "The label must belong to the conversation's inbox (400 LABEL_INBOX_MISMATCH). "
        "An OPERATOR must be subscribed to that inbox (403 LABEL_PERMISSION_DENIED). "
        "Already attached → 204."
    ),
)
async def attach_label(caller: CallerDep, service: ServiceDep, body: LabelAttachment) -> Response:
    await service.attach(
        tenant_id=caller.tenant_id,
        operator_id=caller.operator_id,
        role=caller.role,
        conversation_id=body.conversation_id,
        label_id=body.label_id,
    )
    return no_content()


@router.post(
    "/labels/detach",
    status_code=204,
    response_model=None,
    responses=ERROR_RESPONSES,
    summary="Detach a label from a conversation (idempotent)",
    description="An OPERATOR must be subscribed to the conversation's inbox (403 "
    "LABEL_PERMISSION_DENIED). Not attached → 204.",
)
async def detach_label(caller: CallerDep, service: ServiceDep, body: LabelAttachment) -> Response:
    await service.detach(
        tenant_id=caller.tenant_id,
        operator_id=caller.operator_id,
        role=caller.role,
        conversation_id=body.conversation_id,
        label_id=body.label_id,
    )
    return no_content()
