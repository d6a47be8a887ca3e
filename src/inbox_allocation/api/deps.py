"""Request dependencies: the database, the settings and the caller's identity.

Every `/api/v1` route needs both identity headers (decisions.md). The caller is resolved
once per request: an operator id that does not belong to the X-Tenant-ID tenant is refused
with 401 before any data of the tenant is read or written.

Check order (contract §1.1): malformed X-Tenant-ID, then malformed X-Operator-ID
(400 BAD_REQUEST); missing tenant (400 TENANT_REQUIRED); missing operator
(400 OPERATOR_REQUIRED); unknown operator in this tenant (401 UNAUTHORIZED); role guard
(403 FORBIDDEN).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from uuid import UUID

import structlog
from fastapi import Depends, Header, Request

from inbox_allocation.config import Settings
from inbox_allocation.db.pool import Database
from inbox_allocation.domain.clock import Clock, utc_now
from inbox_allocation.domain.enums import Role
from inbox_allocation.domain.errors import (
    BadRequest,
    Forbidden,
    OperatorRequired,
    TenantRequired,
    Unauthorized,
)
from inbox_allocation.domain.ids import parse_uuid
from inbox_allocation.sql import identity as sql

SEED_TENANT = "10000000-0000-0000-0000-000000000001"
SEED_ADMIN = "30000000-0000-0000-0000-000000000001"


async def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_clock(request: Request) -> Clock:
    """The clock live priorities are evaluated with (tests set `app.state.clock`)."""
    clock: Clock = getattr(request.app.state, "clock", utc_now)
    return clock


DbDep = Annotated[Database, Depends(get_db)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
ClockDep = Annotated[Clock, Depends(get_clock)]


@dataclass(frozen=True, slots=True)
class Identity:
    """The identity headers, parsed but not yet checked against the database."""

    tenant_id: UUID
    operator_id: UUID


@dataclass(frozen=True, slots=True)
class Caller:
    """An operator verified to belong to the tenant, with its role."""

    tenant_id: UUID
    operator_id: UUID
    role: Role

    @property
    def is_manager_level(self) -> bool:
        return self.role.is_manager_level


def _header_uuid(value: str | None, name: str) -> UUID | None:
    if not value:
        return None
    parsed = parse_uuid(value)
    if parsed is None:
        raise BadRequest(f"{name} must be a UUID")
    return parsed


async def identity_headers(
    x_tenant_id: Annotated[
        str | None,
        Header(
            alias="X-Tenant-ID",
            description="Tenant UUID (required)",
            examples=[SEED_TENANT],
        ),
    ] = None,
    x_operator_id: Annotated[
        str | None,
        Header(
            alias="X-Operator-ID",
            description="UUID of the calling operator; must belong to the tenant (required)",
            examples=[SEED_ADMIN],
        ),
    ] = None,
) -> Identity:
    tenant_id = _header_uuid(x_tenant_id, "X-Tenant-ID")
    operator_id = _header_uuid(x_operator_id, "X-Operator-ID")
    if tenant_id is None:
        raise TenantRequired()
    if operator_id is None:
        raise OperatorRequired()
    structlog.contextvars.bind_contextvars(tenant_id=str(tenant_id), operator_id=str(operator_id))
    return Identity(tenant_id, operator_id)


IdentityDep = Annotated[Identity, Depends(identity_headers)]


async def current_caller(identity: IdentityDep, db: DbDep) -> Caller:
    role = await db.fetchval(sql.OPERATOR_ROLE, identity.tenant_id, identity.operator_id)
    if role is None:
        raise Unauthorized()
    return Caller(identity.tenant_id, identity.operator_id, Role(role))


CallerDep = Annotated[Caller, Depends(current_caller)]


async def manager_caller(caller: CallerDep) -> Caller:
    if not caller.is_manager_level:
        raise Forbidden("this route needs a MANAGER or ADMIN")
    return caller


async def admin_caller(caller: CallerDep) -> Caller:
    if caller.role is not Role.ADMIN:
        raise Forbidden("this route needs an ADMIN")
    return caller


ManagerDep = Annotated[Caller, Depends(manager_caller)]
AdminDep = Annotated[Caller, Depends(admin_caller)]
