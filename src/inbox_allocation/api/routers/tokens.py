"""API tokens of an operator: /api/v1/operators/{operator_id}/tokens.

They exist in every AUTH_MODE, so tokens can be issued before a deployment switches to
AUTH_MODE=token. An ADMIN manages the tokens of any operator of its tenant; any operator
manages its own; anything else is 403 FORBIDDEN (checked before the operator is looked up,
so a non-admin learns nothing about other operators). Token creation is never stored for
idempotent replay: the token is shown once and only its hash is kept (api.idempotency).
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import Depends, Path
from starlette.responses import Response

from inbox_allocation.api.deps import Caller, SelfOrAdminDep, provider
from inbox_allocation.api.errors import ERROR_RESPONSES
from inbox_allocation.api.params import parse_id
from inbox_allocation.api.responses import ok
from inbox_allocation.api.routers.operators import OperatorIdDep
from inbox_allocation.api.routing import api_router
from inbox_allocation.api.schemas.envelope import Envelope
from inbox_allocation.api.schemas.tokens import TokenCreate, TokenCreated, TokenOut
from inbox_allocation.domain.errors import NotFound
from inbox_allocation.services.tokens import TokenService

router = api_router(prefix="/api/v1/operators/{operator_id}/tokens", tags=["tokens"])


async def token_id_path(
    token_id: Annotated[str, Path(description="Token id (not the token itself)")],
) -> UUID:
    return parse_id(token_id, "token_id")


ServiceDep = Annotated[TokenService, Depends(provider(TokenService))]
TokenIdDep = Annotated[UUID, Depends(token_id_path)]


async def _check_access(caller: Caller, operator_id: UUID, service: TokenService) -> None:
    """Past the role rule (SelfOrAdminDep): the operator must be in the tenant (else 404)."""
    exists = await service.operator_exists(tenant_id=caller.tenant_id, operator_id=operator_id)
    if not exists:
        raise NotFound("operator not found")


@router.post(
    "",
    status_code=201,
    response_model=Envelope[TokenCreated],
    responses=ERROR_RESPONSES,
    summary="Issue an API token",
    description="The token is in this response only. ADMIN for any operator of the tenant; "
    "any operator for itself.",
)
async def create_token(
    caller: SelfOrAdminDep, operator_id: OperatorIdDep, service: ServiceDep, body: TokenCreate
) -> Response:
    await _check_access(caller, operator_id, service)
    data = await service.create(
        tenant_id=caller.tenant_id,
        operator_id=operator_id,
        name=body.name,
        expires_in_days=body.expires_in_days,
    )
    return ok(data, 201)


@router.get(
    "",
    response_model=Envelope[list[TokenOut]],
    responses=ERROR_RESPONSES,
    summary="An operator's API tokens",
    description="Newest first, revoked ones included; never the token itself.",
)
async def list_tokens(
    caller: SelfOrAdminDep, operator_id: OperatorIdDep, service: ServiceDep
) -> Response:
    await _check_access(caller, operator_id, service)
    return ok(await service.list_for(tenant_id=caller.tenant_id, operator_id=operator_id))


@router.delete(
    "/{token_id}",
    response_model=Envelope[TokenOut],
    responses=ERROR_RESPONSES,
    summary="Revoke an API token",
    description="From the answer on, the token is refused (401) by every replica. Revoking "
    "a revoked token answers 200 again.",
)
async def revoke_token(
    caller: SelfOrAdminDep, operator_id: OperatorIdDep, token_id: TokenIdDep, service: ServiceDep
) -> Response:
    await _check_access(caller, operator_id, service)
    row = await service.revoke(
        tenant_id=caller.tenant_id, operator_id=operator_id, token_id=token_id
    )
    return ok(row)
