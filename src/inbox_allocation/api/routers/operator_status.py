"""GET/PUT /api/v1/operator/status — the caller's own availability."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.responses import Response

from inbox_allocation.api.deps import CallerDep, grace_period_of, provider
from inbox_allocation.api.errors import ERROR_RESPONSES
from inbox_allocation.api.responses import ok
from inbox_allocation.api.routing import api_router
from inbox_allocation.api.schemas.envelope import Envelope
from inbox_allocation.api.schemas.operator_status import OperatorStatusOut, StatusChange
from inbox_allocation.domain.enums import OperatorStatus
from inbox_allocation.services.operator_status import OperatorStatusService

router = api_router(prefix="/api/v1/operator", tags=["operator status"])


ServiceDep = Annotated[
    OperatorStatusService, Depends(provider(OperatorStatusService, grace_period=grace_period_of))
]


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
