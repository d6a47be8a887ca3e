"""Request dependencies: the database, the settings and the caller's identity.

Every `/api/v1` route needs both identity headers (docs/decisions.md#identity-headers). With
AUTH_MODE=token or jwt the authentication middleware (api.auth) has verified the bearer
credential and set them to its tenant and operator, so the same checks serve every mode. The
caller is resolved once per request: an operator id that does not belong to the X-Tenant-ID
tenant is refused with 401 before any data of the tenant is read or written.

Check order (docs/decisions.md#check-order): malformed X-Tenant-ID, then malformed X-Operator-ID
(400 BAD_REQUEST); missing tenant (400 TENANT_REQUIRED); missing operator
(400 OPERATOR_REQUIRED); unknown operator in this tenant (401 UNAUTHORIZED); role guard
(403 FORBIDDEN).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, TypeVar
from uuid import UUID

import structlog
from fastapi import Depends, Request
from starlette.datastructures import Headers

from inbox_allocation.config import Settings
from inbox_allocation.db.pool import TENANT, Database
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

S = TypeVar("S")


def db_of(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def clock_of(request: Request) -> Clock:
    """The clock live priorities are evaluated with (tests set `app.state.clock`)."""
    clock: Clock = getattr(request.app.state, "clock", utc_now)
    return clock


def grace_period_of(request: Request) -> timedelta:
    return settings_of(request).grace_period_duration


def provider(
    service: Callable[..., S], **resources: Callable[[Request], object]
) -> Callable[[Request], Awaitable[S]]:
    """The route dependency that builds `service` for a request: the database, then each
    keyword read from the request by its reader, e.g.
    `Depends(provider(AllocationService, clock=clock_of))`. Services are cheap, stateless
    wrappers around the pool: one per request, nothing cached between requests."""

    async def provide(request: Request) -> S:
        return service(db_of(request), **{name: read(request) for name, read in resources.items()})

    return provide


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


def _single(headers: Headers, name: str) -> str | None:
    # Sent twice, an identity header is ambiguous (a proxy may append its own value to the
    # client's, and the parts of the service could each read a different one): refused.
    values = headers.getlist(name)
    if len(values) > 1:
        raise BadRequest(f"{name} must be sent once")
    return values[0] if values else None


def read_identity(headers: Headers) -> Identity:
    """The identity headers, in the contract's check order (no database access)."""
    tenant_id = _header_uuid(_single(headers, "X-Tenant-ID"), "X-Tenant-ID")
    operator_id = _header_uuid(_single(headers, "X-Operator-ID"), "X-Operator-ID")
    if tenant_id is None:
        raise TenantRequired()
    if operator_id is None:
        raise OperatorRequired()
    structlog.contextvars.bind_contextvars(tenant_id=str(tenant_id), operator_id=str(operator_id))
    TENANT.set(tenant_id)  # from here on the request's connections count against its tenant
    return Identity(tenant_id, operator_id)


async def verify_caller(identity: Identity, db: Database) -> Caller:
    """The operator must exist in the tenant (401 otherwise); returns it with its role."""
    role = await db.fetchval(sql.OPERATOR_ROLE, identity.tenant_id, identity.operator_id)
    if role is None:
        raise Unauthorized()
    return Caller(identity.tenant_id, identity.operator_id, Role(role))


def require_manager(caller: Caller) -> Caller:
    if not caller.is_manager_level:
        raise Forbidden("this route needs a MANAGER or ADMIN")
    return caller


def require_admin(caller: Caller) -> Caller:
    if caller.role is not Role.ADMIN:
        raise Forbidden("this route needs an ADMIN")
    return caller


def require_self_or_admin(caller: Caller, operator_id: UUID | None) -> Caller:
    """An ADMIN may act on any operator of its tenant, anyone else on itself only (the
    path's operator_id; checked before the operator is looked up)."""
    if caller.role is not Role.ADMIN and operator_id != caller.operator_id:
        raise Forbidden("only an ADMIN acts on other operators' tokens")
    return caller


# The route dependencies: one flat dependency per route (FastAPI's dependency solving is a
# measurable share of each request). The identity headers are documented on every /api/v1
# operation by api.openapi.


async def identity(request: Request) -> Identity:
    """Identity headers only: for routes whose statement verifies the caller itself."""
    return read_identity(request.headers)


async def current_caller(request: Request) -> Caller:
    return await verify_caller(read_identity(request.headers), db_of(request))


async def manager_caller(request: Request) -> Caller:
    return require_manager(await current_caller(request))


async def admin_caller(request: Request) -> Caller:
    return require_admin(await current_caller(request))


async def self_or_admin_caller(request: Request) -> Caller:
    operator_id = parse_uuid(str(request.path_params.get("operator_id", "")))
    return require_self_or_admin(await current_caller(request), operator_id)


IdentityDep = Annotated[Identity, Depends(identity)]
CallerDep = Annotated[Caller, Depends(current_caller)]
ManagerDep = Annotated[Caller, Depends(manager_caller)]
AdminDep = Annotated[Caller, Depends(admin_caller)]
SelfOrAdminDep = Annotated[Caller, Depends(self_or_admin_caller)]
