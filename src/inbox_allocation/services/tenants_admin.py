"""Tenant provisioning (the CLI's `tenant create` and `tenant list`).

Creating a tenant also creates its first ADMIN operator (status OFFLINE) in the same
transaction (decisions.md): the customer's administrator can call the API with the two ids
printed and set everything else up (inboxes, operators, subscriptions) from there. The
weights follow the rules of PUT /tenant/weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg
from uuid_utils.compat import uuid7

from inbox_allocation.services.tenants import weight_rule_failures
from inbox_allocation.sql import tenant_admin as sql

MAX_NAME_LENGTH = 255  # tenants.name is varchar(255)
DEFAULT_WEIGHT = 0.5


class ProvisioningError(ValueError):
    """The request cannot be carried out; the message says why, in one line."""


class InvalidTenant(ProvisioningError):
    """Invalid name or weights (nothing was written)."""


class DuplicateTenantName(ProvisioningError):
    def __init__(self, name: str) -> None:
        super().__init__(f"a tenant named {name!r} already exists")


@dataclass(frozen=True, slots=True)
class ProvisionedTenant:
    tenant_id: UUID
    admin_operator_id: UUID


def new_tenant_problems(name: str, alpha: float, beta: float) -> list[str]:
    """Every rule the arguments break: the name (1–255 characters, not blank) and the
    weights (0 ≤ alpha, beta ≤ 1; |alpha + beta − 1| ≤ 0.01)."""
    problems = []
    if not name.strip():
        problems.append("name: must not be empty")
    elif len(name.strip()) > MAX_NAME_LENGTH:
        problems.append(f"name: at most {MAX_NAME_LENGTH} characters")
    return problems + weight_rule_failures(alpha, beta)


async def create_tenant(
    conn: asyncpg.Connection, *, name: str, alpha: float = DEFAULT_WEIGHT,
    beta: float = DEFAULT_WEIGHT,
) -> ProvisionedTenant:  # fmt: skip
    """The tenant, its ADMIN operator and that operator's OFFLINE status, atomically."""
    problems = new_tenant_problems(name, alpha, beta)
    if problems:
        raise InvalidTenant("; ".join(problems))
    name = name.strip()
    tenant_id, admin_id = uuid7(), uuid7()
    async with conn.transaction():
        created = await conn.fetchval(
            sql.INSERT_TENANT, tenant_id, name, Decimal(repr(alpha)), Decimal(repr(beta))
        )
        if created is None:
            raise DuplicateTenantName(name)
        await conn.execute(sql.INSERT_ADMIN, tenant_id, admin_id)
        await conn.execute(sql.INSERT_ADMIN_STATUS, tenant_id, admin_id, uuid7())
    return ProvisionedTenant(tenant_id, admin_id)


async def list_tenants(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    """Every tenant (id, name, weights, created_at), oldest first."""
    return [dict(row) for row in await conn.fetch(sql.LIST_TENANTS)]
