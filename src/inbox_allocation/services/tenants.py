"""The caller's tenant: reading it and changing its priority weights."""

from __future__ import annotations

import math
import time
from decimal import Decimal
from uuid import UUID

import asyncpg

from inbox_allocation.db.pool import Database
from inbox_allocation.domain.errors import NotFound, ValidationFailed
from inbox_allocation.services.priority_keys import PriorityKeys
from inbox_allocation.sql import tenants as sql

# How long PUT /tenant/weights recomputes priority keys itself before answering.
CATCH_UP_SECONDS = 1.0

# |alpha + beta − 1| may be at most this (docs/decisions.md#tenant-weights).
WEIGHT_SUM_TOLERANCE = Decimal("0.01")


def weight_rule_failures(alpha: float, beta: float) -> list[str]:
    """One entry per failed rule (docs/decisions.md#tenant-weights).

    The rules are evaluated on the decimals the client wrote (0.6 + 0.41 is exactly 1.01,
    within the tolerance), not on binary floats (where it is 1.0099999999999998…).
    """
    if not (math.isfinite(alpha) and math.isfinite(beta)):
        return ["alpha, beta: must be finite numbers"]
    exact_alpha, exact_beta = _exact(alpha), _exact(beta)
    failures = []
    if not 0 <= exact_alpha <= 1:
        failures.append("alpha: must be between 0 and 1")
    if not 0 <= exact_beta <= 1:
        failures.append("beta: must be between 0 and 1")
    if abs(exact_alpha + exact_beta - 1) > WEIGHT_SUM_TOLERANCE:
        failures.append("alpha + beta: must be 1 (within 0.01)")
    return failures


class TenantService:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, *, tenant_id: UUID) -> asyncpg.Record:
        row = await self.db.fetchrow(sql.GET_TENANT, tenant_id)
        if row is None:
            raise NotFound("tenant not found")
        return row

    async def update_weights(
        self, *, tenant_id: UUID, operator_id: UUID, alpha: float, beta: float
    ) -> asyncpg.Record:
        """Store the weights (rounded by the numeric(5,4) columns) and return the tenant as
        stored (docs/decisions.md#tenant-weights). `operator_id` (the caller) is recorded as
        `updated_by`.

        One row changes: the tenant's, with a new weights version. The priority keys of its
        conversations are then recomputed for up to CATCH_UP_SECONDS here and the rest in the
        background (services/priority_keys.py); until they have, allocation serves the rows
        not recomputed yet in the order of the weights their keys carry (see that module).
        """
        failures = weight_rule_failures(alpha, beta)
        if failures:
            raise ValidationFailed(details=failures)
        row: asyncpg.Record | None = await self.db.fetchrow(
            sql.UPDATE_WEIGHTS, tenant_id, _exact(alpha), _exact(beta), operator_id
        )
        if row is None:
            raise NotFound("tenant not found")
        # Committed: recompute what fits in the budget now, the worker does the rest.
        await PriorityKeys(self.db).catch_up_tenant(
            tenant_id, until=time.monotonic() + CATCH_UP_SECONDS
        )
        return row


def _exact(value: float) -> Decimal:
    """The decimal the client wrote (0.1 → Decimal('0.1'), not 0.1000000000000000055…)."""
    return Decimal(repr(value))
