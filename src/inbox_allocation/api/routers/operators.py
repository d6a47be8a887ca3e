"""Operators of the tenant (/api/v1/operators) and an operator's subscriptions. Admin only.

Rules (docs/decisions.md#last-admin): an operator cannot delete or demote itself, the
tenant's last ADMIN cannot be deleted or demoted, and deleting an operator re-queues its
conversations (docs/decisions.md#operator-deletion). The listed paths also match with one trailing
slash (docs/decisions.md#trailing-slashes).
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import Depends, Path
from starlette.responses import Response

from inbox_allocation.api.deps import AdminDep, provider
from inbox_allocation.api.errors import ERROR_RESPONSES
from inbox_allocation.api.params import PaginationDep, parse_id
from inbox_allocation.api.responses import no_content, ok
from inbox_allocation.api.routing import api_router
from inbox_allocation.api.schemas.common import list_meta
from inbox_allocation.api.schemas.envelope import Envelope
from inbox_allocation.api.schemas.operators import (
    OperatorCreate,
    OperatorList,
    OperatorOut,
    OperatorUpdate,
)
from inbox_allocation.api.schemas.subscriptions import SubscriptionList
from inbox_allocation.db.seed_ids import ACME_OP4
from inbox_allocation.domain.enums import Role
from inbox_allocation.services.operators import OperatorService
from inbox_allocation.services.subscriptions import SubscriptionService

router = api_router(prefix="/api/v1/operators")


async def operator_id_path(
    operator_id: Annotated[str, Path(description="Operator UUID", examples=[ACME_OP4])],
) -> UUID:
    return parse_id(operator_id, "operator_id")


OperatorIdDep = Annotated[UUID, Depends(operator_id_path)]


ServiceDep = Annotated[OperatorService, Depends(provider(OperatorService))]
SubscriptionServiceDep = Annotated[SubscriptionService, Depends(provider(SubscriptionService))]


@router.get(
    "",
    response_model=Envelope[OperatorList],
    responses=ERROR_RESPONSES,
    tags=["operators"],
    summary="The tenant's operators",
    description="Newest first, one page at a time.",
)
@router.get("/", include_in_schema=False)
async def list_operators(caller: AdminDep, service: ServiceDep, paging: PaginationDep) -> Response:
    items, total = await service.list_all(
        tenant_id=caller.tenant_id, page=paging.page, per_page=paging.per_page
    )
    meta = list_meta(page=paging.page, per_page=paging.per_page, total=total)
    return ok({"operators": items, "meta": meta})


@router.post(
    "",
    status_code=201,
    response_model=Envelope[OperatorOut],
    responses=ERROR_RESPONSES,
    tags=["operators"],
    summary="Create an operator",
    description="The new operator starts OFFLINE.",
)
@router.post("/", status_code=201, include_in_schema=False)
async def create_operator(caller: AdminDep, service: ServiceDep, body: OperatorCreate) -> Response:
    row = await service.create(
        tenant_id=caller.tenant_id,
        role=Role(body.role),
        capacity=body.max_concurrent_conversations,
    )
    return ok(dict(row), 201)


@router.get(
    "/{operator_id}",
    response_model=Envelope[OperatorOut],
    responses=ERROR_RESPONSES,
    tags=["operators"],
    summary="An operator",
)
@router.get("/{operator_id}/", include_in_schema=False)
async def get_operator(
    caller: AdminDep, operator_id: OperatorIdDep, service: ServiceDep
) -> Response:
    row = await service.get(tenant_id=caller.tenant_id, operator_id=operator_id)
    return ok(dict(row))


@router.put(
    "/{operator_id}",
    response_model=Envelope[OperatorOut],
    responses=ERROR_RESPONSES,
    tags=["operators"],
    summary="Change an operator's role and/or capacity",
    description=(
        "Fields absent from the body stay unchanged (at least one is required). "
        "409 CANNOT_MODIFY_SELF when an admin demotes itself; 409 LAST_ADMIN when the "
        "tenant's last ADMIN would be demoted."
    ),
)
@router.put("/{operator_id}/", include_in_schema=False)
async def update_operator(
    caller: AdminDep, operator_id: OperatorIdDep, service: ServiceDep, body: OperatorUpdate
) -> Response:
    row = await service.update(
        tenant_id=caller.tenant_id,
        caller_id=caller.operator_id,
        operator_id=operator_id,
        role=Role(body.role) if body.role else None,
        set_capacity=body.sets_capacity,
        capacity=body.max_concurrent_conversations,
    )
    return ok(dict(row))


@router.delete(
    "/{operator_id}",
    status_code=204,
    response_class=Response,
    responses=ERROR_RESPONSES,
    tags=["operators"],
    summary="Delete an operator",
    description=(
        "Its ALLOCATED conversations go back to the queue; its status, subscriptions and "
        "grace periods are deleted. 409 CANNOT_MODIFY_SELF for the caller itself; 409 "
        "LAST_ADMIN for the tenant's last ADMIN."
    ),
)
@router.delete("/{operator_id}/", status_code=204, response_class=Response, include_in_schema=False)
async def delete_operator(
    caller: AdminDep, operator_id: OperatorIdDep, service: ServiceDep
) -> Response:
    await service.delete(
        tenant_id=caller.tenant_id, caller_id=caller.operator_id, operator_id=operator_id
    )
    return no_content()


@router.get(
    "/{operator_id}/inboxes",
    response_model=Envelope[SubscriptionList],
    responses=ERROR_RESPONSES,
    summary="The operator's subscriptions",
    description="Subscription rows of the operator (not inbox objects), oldest first.",
    tags=["subscriptions"],
)
async def list_operator_subscriptions(
    caller: AdminDep,
    operator_id: OperatorIdDep,
    service: SubscriptionServiceDep,
    paging: PaginationDep,
) -> Response:
    items, total = await service.list_for_operator(
        tenant_id=caller.tenant_id,
        operator_id=operator_id,
        page=paging.page,
        per_page=paging.per_page,
    )
    meta = list_meta(page=paging.page, per_page=paging.per_page, total=total)
    return ok({"subscriptions": items, "meta": meta})
