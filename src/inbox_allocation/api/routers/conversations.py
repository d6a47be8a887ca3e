"""GET /api/v1/conversations (list), /conversations/{id} and /search
(docs/decisions.md#visibility)."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import Depends, Path, Query
from starlette.responses import Response

from inbox_allocation.api.deps import CallerDep, ManagerDep, clock_of, provider
from inbox_allocation.api.errors import ERROR_RESPONSES
from inbox_allocation.api.params import parse_id
from inbox_allocation.api.responses import ok
from inbox_allocation.api.routing import api_router
from inbox_allocation.api.schemas.conversation_queries import (
    ConversationList,
    SearchResult,
    parse_list_query,
    parse_search_query,
)
from inbox_allocation.api.schemas.conversations import (
    Conversation,
    InboundMessageRequest,
    render_conversation,
)
from inbox_allocation.api.schemas.envelope import Envelope
from inbox_allocation.db.seed_ids import ACME_OP4, HOT_LEAD, INBOX_SALES, conversation
from inbox_allocation.services.conversations import ConversationService
from inbox_allocation.services.ingestion import InboundMessage, IngestionService

router = api_router(prefix="/api/v1", tags=["conversations"])


ServiceDep = Annotated[ConversationService, Depends(provider(ConversationService, clock=clock_of))]
IngestionDep = Annotated[IngestionService, Depends(provider(IngestionService, clock=clock_of))]


async def conversation_id_path(
    id: Annotated[str, Path(description="Conversation UUID", examples=[conversation(1)])],
) -> UUID:
    return parse_id(id, "conversation id")


ConversationIdDep = Annotated[UUID, Depends(conversation_id_path)]

_LIST_DESCRIPTION = """
Keyset-paginated: pass `meta.next_cursor` back as `cursor` (with the same `sort`) for the
next page; `has_more` is true only when more rows exist.

Orders: `newest` (default) = last_message_at DESC, id DESC; `oldest` = last_message_at ASC,
id ASC; `priority` = the queue (QUEUED conversations) by priority_score DESC, last_message_at
ASC, id ASC — the order in which /allocate hands them out (`state` must then be QUEUED or
omitted: another state with `sort=priority` is 400 VALIDATION_ERROR).

Role OPERATOR sees only the inboxes it is subscribed to; MANAGER and ADMIN the whole tenant.
An invalid filter, sort or cursor is 400 VALIDATION_ERROR.
"""


@router.get(
    "/conversations",
    response_model=Envelope[ConversationList],
    responses=ERROR_RESPONSES,
    summary="List conversations",
    description=_LIST_DESCRIPTION,
)
@router.get("/conversations/", include_in_schema=False)
async def list_conversations(
    *,
    caller: CallerDep,
    service: ServiceDep,
    state: Annotated[
        str | None,
        Query(description="QUEUED, ALLOCATED or RESOLVED (case-sensitive)", examples=["QUEUED"]),
    ] = None,
    inbox_id: Annotated[
        str | None, Query(description="Only this inbox", examples=[INBOX_SALES])
    ] = None,
    operator_id: Annotated[
        str | None,
        Query(description="Only conversations assigned to this operator", examples=[ACME_OP4]),
    ] = None,
    label_id: Annotated[
        str | None, Query(description="Only conversations with this label", examples=[HOT_LEAD])
    ] = None,
    sort: Annotated[
        str | None,
        Query(
            description="newest (default), oldest or priority; case-insensitive",
            examples=["priority"],
        ),
    ] = None,
    cursor: Annotated[
        str | None, Query(description="`meta.next_cursor` of the previous page")
    ] = None,
    per_page: Annotated[
        str | None,
        Query(
            description="Page size: default 50; < 1 or not an integer → 50; > 100 → 100",
            examples=["20"],
        ),
    ] = None,
) -> Response:
    query = parse_list_query(
        state=state,
        inbox_id=inbox_id,
        operator_id=operator_id,
        label_id=label_id,
        sort=sort,
        cursor=cursor,
        per_page=per_page,
    )
    page = await service.list_page(
        tenant_id=caller.tenant_id, operator_id=caller.operator_id, role=caller.role, query=query
    )
    meta: dict[str, object] = {"has_more": page.has_more, "count": len(page.rows)}
    if page.next_cursor is not None:
        meta["next_cursor"] = page.next_cursor
    conversations = [render_conversation(row) for row in page.rows]
    return ok({"conversations": conversations, "meta": meta})


@router.post(
    "/conversations",
    status_code=201,
    response_model=Envelope[Conversation],
    responses={200: {"model": Envelope[Conversation], "description": "Existing conversation"},
               **ERROR_RESPONSES},
    summary="Record an inbound customer message",
    description=(
        "Called by the messaging gateway (a MANAGER or ADMIN operator) for every inbound "
        "message. One atomic upsert keyed by (tenant, external_conversation_id): a new "
        "conversation is QUEUED (201); an existing one counts the message and keeps the later "
        "last_message_at (200) — a RESOLVED one is reopened to QUEUED, an ALLOCATED one stays "
        "with its operator. Idempotent with an Idempotency-Key header."
    ),
)  # fmt: skip
@router.post("/conversations/", status_code=201, include_in_schema=False)
async def record_message(
    caller: ManagerDep, service: IngestionDep, body: InboundMessageRequest
) -> Response:
    row, created = await service.record_message(
        tenant_id=caller.tenant_id,
        message=InboundMessage(
            inbox_id=body.inbox_id,
            external_conversation_id=body.external_conversation_id,
            customer_phone_number=body.customer_phone_number,
            message_at=body.message_at,
        ),
    )
    return ok(render_conversation(row), 201 if created else 200)


@router.get(
    "/conversations/{id}",
    response_model=Envelope[Conversation],
    responses=ERROR_RESPONSES,
    summary="One conversation, with its labels",
    description="404 NOT_FOUND also when a caller with role OPERATOR is not subscribed to "
    "the conversation's inbox.",
)
async def get_conversation(
    caller: CallerDep, conversation_id: ConversationIdDep, service: ServiceDep
) -> Response:
    row = await service.get(
        tenant_id=caller.tenant_id,
        operator_id=caller.operator_id,
        role=caller.role,
        conversation_id=conversation_id,
    )
    return ok(render_conversation(row))


@router.get(
    "/search",
    response_model=Envelope[SearchResult],
    responses=ERROR_RESPONSES,
    summary="Find conversations by customer phone number",
    description=(
        "Exact match on the number after removing spaces, dashes, dots and parentheses; "
        "`+14155551001`, `%2B14155551001` and `14155551001` all find `+14155551001`. Newest "
        "first (created_at), at most 100. Role OPERATOR sees only its subscribed inboxes."
    ),
)
async def search_conversations(
    caller: CallerDep,
    service: ServiceDep,
    phone: Annotated[
        str | None, Query(description="Customer phone number", examples=["+14155551001"])
    ] = None,
    q: Annotated[str | None, Query(description="Alias of `phone`")] = None,
) -> Response:
    query = parse_search_query(phone=phone, q=q)
    rows = await service.search(
        tenant_id=caller.tenant_id, operator_id=caller.operator_id, role=caller.role, phone=query
    )
    conversations = [render_conversation(row) for row in rows]
    return ok(
        {"conversations": conversations, "meta": {"query": query.display, "count": len(rows)}}
    )
