"""Inboxes (/api/v1/inboxes) and their operator subscriptions (/inboxes/{inbox_id}/operators).

The listed paths also match with one trailing slash (docs/decisions.md#trailing-slashes):
each has a
hidden second route for that.
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import Depends, Path, Query
from starlette.responses import Response

from inbox_allocation.api.deps import CallerDep, ManagerDep, provider
from inbox_allocation.api.errors import ERROR_RESPONSES
from inbox_allocation.api.params import PaginationDep, parse_id
from inbox_allocation.api.responses import no_content, ok
from inbox_allocation.api.routing import api_router
from inbox_allocation.api.schemas.common import list_meta
from inbox_allocation.api.schemas.envelope import Envelope
from inbox_allocation.api.schemas.inboxes import InboxCreate, InboxList, InboxOut, InboxUpdate
from inbox_allocation.api.schemas.subscriptions import (
    SubscriptionCreate,
    SubscriptionList,
    SubscriptionOut,
)
from inbox_allocation.db.seed_ids import ACME_OP4, INBOX_SALES
from inbox_allocation.domain.errors import ValidationFailed
from inbox_allocation.services.inboxes import InboxService
from inbox_allocation.services.subscriptions import SubscriptionService

router = api_router(prefix="/api/v1/inboxes")


async def inbox_id_path(
    inbox_id: Annotated[str, Path(description="Inbox UUID", examples=[INBOX_SALES])],
) -> UUID:
    return parse_id(inbox_id, "inbox_id")


async def subscriber_id_path(
    operator_id: Annotated[
        str, Path(description="UUID of the operator to unsubscribe", examples=[ACME_OP4])
    ],
) -> UUID:
    return parse_id(operator_id, "operator_id")


async def subscriber_id_query(
    operator_id: Annotated[
        str | None,
        Query(description="UUID of the operator to unsubscribe", examples=[ACME_OP4]),
    ] = None,
) -> UUID:
    if operator_id is None or not operator_id.strip():
        raise ValidationFailed(details=["operator_id: is required"])
    return parse_id(operator_id, "operator_id")


InboxIdDep = Annotated[UUID, Depends(inbox_id_path)]


InboxServiceDep = Annotated[InboxService, Depends(provider(InboxService))]
SubscriptionServiceDep = Annotated[SubscriptionService, Depends(provider(SubscriptionService))]


# --- inboxes --------------------------------------------------------------------------------


@router.get(
    "",
    response_model=Envelope[InboxList],
    responses=ERROR_RESPONSES,
    tags=["inboxes"],
    summary="The caller's inboxes",
    description=(
        "Inboxes of the tenant the caller is subscribed to (any role), in subscription "
        "order, one page at a time."
    ),
)
@router.get("/", include_in_schema=False)
async def list_inboxes(
    caller: CallerDep, service: InboxServiceDep, paging: PaginationDep
) -> Response:
    items, total = await service.list_subscribed(
        tenant_id=caller.tenant_id,
        operator_id=caller.operator_id,
        page=paging.page,
        per_page=paging.per_page,
    )
    meta = list_meta(page=paging.page, per_page=paging.per_page, total=total)
    return ok({"inboxes": items, "meta": meta})


@router.post(
    "",
    status_code=201,
    response_model=Envelope[InboxOut],
    responses=ERROR_RESPONSES,
    tags=["inboxes"],
    summary="Create an inbox",
    description="409 CONFLICT when the tenant already has an inbox with this phone number.",
)
@router.post("/", status_code=201, include_in_schema=False)
async def create_inbox(caller: ManagerDep, service: InboxServiceDep, body: InboxCreate) -> Response:
    row = await service.create(
        tenant_id=caller.tenant_id,
        phone_number=body.phone_number,
        display_name=body.display_name,
    )
    return ok(dict(row), 201)


@router.get(
    "/{inbox_id}",
    response_model=Envelope[InboxOut],
    responses=ERROR_RESPONSES,
    tags=["inboxes"],
    summary="An inbox",
)
@router.get("/{inbox_id}/", include_in_schema=False)
async def get_inbox(caller: ManagerDep, inbox_id: InboxIdDep, service: InboxServiceDep) -> Response:
    row = await service.get(tenant_id=caller.tenant_id, inbox_id=inbox_id)
    return ok(dict(row))


@router.put(
    "/{inbox_id}",
    response_model=Envelope[InboxOut],
    responses=ERROR_RESPONSES,
    tags=["inboxes"],
    summary="Change an inbox",
    description=(
        "Only the fields sent change; `{}` only bumps `updated_at`. 409 CONFLICT when "
        "another inbox of the tenant has the new phone number."
    ),
)
@router.put("/{inbox_id}/", include_in_schema=False)
async def update_inbox(
    caller: ManagerDep, inbox_id: InboxIdDep, service: InboxServiceDep, body: InboxUpdate
) -> Response:
    row = await service.update(
        tenant_id=caller.tenant_id,
        inbox_id=inbox_id,
        phone_number=body.phone_number,
        display_name=body.display_name,
    )
    return ok(dict(row))


@router.delete(
    "/{inbox_id}",
    status_code=204,
    response_class=Response,
    responses=ERROR_RESPONSES,
    tags=["inboxes"],
    summary="Delete an inbox",
    description="Its conversations, labels and subscriptions are deleted with it.",
)
@router.delete("/{inbox_id}/", status_code=204, response_class=Response, include_in_schema=False)
async def delete_inbox(
    caller: ManagerDep, inbox_id: InboxIdDep, service: InboxServiceDep
) -> Response:
    await service.delete(tenant_id=caller.tenant_id, inbox_id=inbox_id)
    return no_content()


# --- subscriptions --------------------------------------------------------------------------


@router.get(
    "/{inbox_id}/operators",
    response_model=Envelope[SubscriptionList],
    responses=ERROR_RESPONSES,
    summary="The inbox's subscriptions",
    description="Subscription rows of the inbox, oldest first, one page at a time.",
    tags=["subscriptions"],
)
@router.get("/{inbox_id}/operators/", include_in_schema=False)
async def list_subscriptions(
    caller: ManagerDep,
    inbox_id: InboxIdDep,
    service: SubscriptionServiceDep,
    paging: PaginationDep,
) -> Response:
    items, total = await service.list_for_inbox(
        tenant_id=caller.tenant_id,
        inbox_id=inbox_id,
        page=paging.page,
        per_page=paging.per_page,
    )
    meta = list_meta(page=paging.page, per_page=paging.per_page, total=total)
    return ok({"subscriptions": items, "meta": meta})


@router.post(
    "/{inbox_id}/operators",
    status_code=201,
    response_model=Envelope[SubscriptionOut],
    responses=ERROR_RESPONSES,
    summary="Subscribe an operator to the inbox",
    description="Already subscribed → 201 with the existing subscription.",
    tags=["subscriptions"],
)
@router.post("/{inbox_id}/operators/", status_code=201, include_in_schema=False)
async def subscribe(
    caller: ManagerDep,
    inbox_id: InboxIdDep,
    service: SubscriptionServiceDep,
    body: SubscriptionCreate,
) -> Response:
    row = await service.subscribe(
        tenant_id=caller.tenant_id, inbox_id=inbox_id, operator_id=body.operator_id
    )
    return ok(dict(row), 201)


_UNSUBSCRIBE_DESCRIPTION = (
    "204 also when the operator was not subscribed. The operator's conversations ALLOCATED "
    "in this inbox go back to the queue."
)


@router.delete(
    "/{inbox_id}/operators/{operator_id}",
    status_code=204,
    response_class=Response,
    responses=ERROR_RESPONSES,
    summary="Unsubscribe an operator from the inbox",
    description=_UNSUBSCRIBE_DESCRIPTION,
    tags=["subscriptions"],
)
async def unsubscribe(
    caller: ManagerDep,
    inbox_id: InboxIdDep,
    operator_id: Annotated[UUID, Depends(subscriber_id_path)],
    service: SubscriptionServiceDep,
) -> Response:
    await service.unsubscribe(
        tenant_id=caller.tenant_id, inbox_id=inbox_id, operator_id=operator_id
    )
    return no_content()


@router.delete(
    "/{inbox_id}/operators",
    status_code=204,
    response_class=Response,
    responses=ERROR_RESPONSES,
    summary="Unsubscribe an operator from the inbox (query form)",
    description="Same as `DELETE /inboxes/{inbox_id}/operators/{operator_id}`. "
    + _UNSUBSCRIBE_DESCRIPTION,
    tags=["subscriptions"],
)
@router.delete(
    "/{inbox_id}/operators/", status_code=204, response_class=Response, include_in_schema=False
)
async def unsubscribe_by_query(
    caller: ManagerDep,
    inbox_id: InboxIdDep,
    operator_id: Annotated[UUID, Depends(subscriber_id_query)],
    service: SubscriptionServiceDep,
) -> Response:
    await service.unsubscribe(
        tenant_id=caller.tenant_id, inbox_id=inbox_id, operator_id=operator_id
    )
    return no_content()
