"""GET/PUT /api/v1/operator/status — the caller's own availability."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.responses import Response

from inbox_allocation.api.deps import CallerDep, db_of, settings_of
from inbox_allocation.api.errors import ERROR_RESPONSES
from inbox_allocation.api.responses import ok
from inbox_allocation.api.routing import api_router
from inbox_allocation.api.schemas.envelope import Envelope
from inbox_allocation.api.schemas.operator_status import OperatorStatusOut, StatusChange
from inbox_allocation.domain.enums import OperatorStatus
from inbox_allocation.services.operator_status import OperatorStatusService

router = api_router(prefix="/api/v1/operator", tags=["operator status"])


async def operator_status_service(request: Request) -> OperatorStatusService:
    return OperatorStatusService(db_of(request), settings_of(request).grace_period_duration)


ServiceDep = Annotated[OperatorStatusService, Depends(operator_status_service)]


@router.get(
    "/status",
    response_model=Envelope[OperatorStatusOut],
    responses=ERROR_RESPONSES,
    summary="The caller's status",
)
async def get_status(caller: CallerDep, service: ServiceDep) -> Response:
    row = await service.get(tenant_id=caller.tenant_id, operator_id=caller.operator_id)
    return ok(dict(row))


@router.put(
    "/status",
    response_model=Envelope[OperatorStatusOut],
    responses=ERROR_RESPONSES,
    summary="Change the caller's status",
    description=(
        "Going OFFLINE starts a grace period (GRACE_PERIOD_DURATION) for every conversation "
        "allocated to the caller; coming back removes those grace rows. Same status → "
        "unchanged."
    ),
)
async def put_status(caller: CallerDep, service: ServiceDep, body: StatusChange) -> Response:
    row = await service.change(
        tenant_id=caller.tenant_id,
        operator_id=caller.operator_id,
        status=OperatorStatus(body.status),
    )
    return ok(dict(row))
