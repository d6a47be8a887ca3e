"""The caller's tenant (/api/v1/tenant) and its priority weights. Admin only.

`/api/v1/tenant` also matches with one trailing slash (docs/decisions.md#trailing-slashes).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.responses import Response

from inbox_allocation.api.deps import AdminDep, provider
from inbox_allocation.api.errors import ERROR_RESPONSES
from inbox_allocation.api.responses import ok
from inbox_allocation.api.routing import api_router
from inbox_allocation.api.schemas.envelope import Envelope
from inbox_allocation.api.schemas.tenant import TenantOut, WeightsUpdate
from inbox_allocation.services.tenants import TenantService

router = api_router(prefix="/api/v1/tenant", tags=["tenant"])


ServiceDep = Annotated[TenantService, Depends(provider(TenantService))]


@router.get(
    "",
    response_model=Envelope[TenantOut],
    responses=ERROR_RESPONSES,
    summary="The caller's tenant",
)
@router.get("/", include_in_schema=False)
async def get_tenant(caller: AdminDep, service: ServiceDep) -> Response:
    row = await service.get(tenant_id=caller.tenant_id)
    return ok(dict(row))


@router.put(
    "/weights",
    response_model=Envelope[TenantOut],
    responses=ERROR_RESPONSES,
    summary="Change the priority weights",
    description=(
        "Body `alpha`/`beta` (or the older `weight_message_count`/`weight_wait_time`); a "
        "missing weight counts as 0. Rules: 0 ≤ alpha ≤ 1, 0 ≤ beta ≤ 1, "
        "|alpha + beta − 1| ≤ 0.01 (one `details` entry per failed rule). The weights are "
        "stored to 4 decimal places and the response shows them as stored."
    ),
)
async def update_weights(caller: AdminDep, service: ServiceDep, body: WeightsUpdate) -> Response:
    alpha, beta = body.weights()
    row = await service.update_weights(
        tenant_id=caller.tenant_id, operator_id=caller.operator_id, alpha=alpha, beta=beta
    )
    return ok(dict(row))
