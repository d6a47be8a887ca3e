"""/api/v1/webhooks — event delivery to HTTP endpoints (ADMIN). See docs/events.md."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import Depends, Path
from pydantic import Field, StringConstraints, field_validator
from starlette.responses import Response

from inbox_allocation.api.deps import AdminDep, provider, settings_of
from inbox_allocation.api.errors import ERROR_RESPONSES
from inbox_allocation.api.params import parse_id
from inbox_allocation.api.responses import no_content, ok
from inbox_allocation.api.routing import api_router
from inbox_allocation.api.schemas.common import RequestBody
from inbox_allocation.domain.errors import InvalidPath
from inbox_allocation.services.events import EVENT_TYPES
from inbox_allocation.services.webhooks import WebhookService

router = api_router(prefix="/api/v1", tags=["webhooks"])


class WebhookCreate(RequestBody):
    url: Annotated[str, StringConstraints(min_length=1, max_length=2000)] = Field(
        examples=["https://example.com/hooks/inbox"]
    )
    event_types: list[str] | None = Field(
        None, description=f"Only these types (default: all): {', '.join(EVENT_TYPES)}"
    )
    description: Annotated[str, StringConstraints(max_length=500)] | None = None

    @field_validator("event_types")
    @classmethod
    def _known_types(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            unknown = sorted(set(value) - set(EVENT_TYPES))
            if not value or unknown:
                raise ValueError(f"must be a non-empty list of {', '.join(EVENT_TYPES)}")
            return sorted(set(value))
        return value


ServiceDep = Annotated[WebhookService, Depends(provider(WebhookService, settings=settings_of))]


async def webhook_id_path(id: Annotated[str, Path(description="Webhook UUID")]) -> UUID:
    return parse_id(id, "webhook id", InvalidPath)


WebhookIdDep = Annotated[UUID, Depends(webhook_id_path)]


@router.post(
    "/webhooks",
    status_code=201,
    responses=ERROR_RESPONSES,
    summary="Register a webhook (ADMIN); the secret is shown once",
    description=(
        "`url` must be http or https and may not resolve to a loopback, private or "
        "link-local address (400 VALIDATION_ERROR) unless WEBHOOK_ALLOW_PRIVATE=true. "
        "Deliveries start with the events committed after the webhook was created."
    ),
)
async def create_webhook(caller: AdminDep, service: ServiceDep, body: WebhookCreate) -> Response:
    data = await service.create(
        tenant_id=caller.tenant_id,
        url=body.url,
        event_types=body.event_types,
        description=body.description,
    )
    return ok(data, status_code=201)


@router.get("/webhooks", responses=ERROR_RESPONSES, summary="List webhooks (ADMIN)")
async def list_webhooks(caller: AdminDep, service: ServiceDep) -> Response:
    return ok(await service.list_all(caller.tenant_id))


@router.get("/webhooks/{id}", responses=ERROR_RESPONSES, summary="One webhook (ADMIN)")
async def get_webhook(caller: AdminDep, webhook_id: WebhookIdDep, service: ServiceDep) -> Response:
    return ok(await service.get(caller.tenant_id, webhook_id))


@router.delete(
    "/webhooks/{id}",
    status_code=204,
    response_model=None,
    responses=ERROR_RESPONSES,
    summary="Delete a webhook and its delivery log (ADMIN)",
)
async def delete_webhook(
    caller: AdminDep, webhook_id: WebhookIdDep, service: ServiceDep
) -> Response:
    await service.delete(caller.tenant_id, webhook_id)
    return no_content()


@router.get(
    "/webhooks/{id}/deliveries",
    responses=ERROR_RESPONSES,
    summary="Recent delivery attempts, newest first (ADMIN)",
    description="Event id, attempt, status code or error, duration and next attempt.",
)
async def list_deliveries(
    caller: AdminDep, webhook_id: WebhookIdDep, service: ServiceDep
) -> Response:
    return ok(await service.deliveries(caller.tenant_id, webhook_id))
