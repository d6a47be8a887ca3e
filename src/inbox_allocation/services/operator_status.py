"""Operator availability: reading it, and changing it together with its grace rows."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

import asyncpg
from uuid_utils.compat import uuid7

from inbox_allocation.db.pool import Database
from inbox_allocation.domain.enums import OperatorStatus
from inbox_allocation.domain.errors import NotFound
from inbox_allocation.sql import operator_status as sql


class OperatorStatusService:
    def __init__(self, db: Database, grace_period: timedelta) -> None:
        self.db = db
        self.grace_period = grace_period

    async def get(self, *, tenant_id: UUID, operator_id: UUID) -> asyncpg.Record:
        row = await self.db.fetchrow(sql.GET_STATUS, tenant_id, operator_id)
        if row is None:
            raise NotFound("operator has no status")
        return row

    async def change(
        self, *, tenant_id: UUID, operator_id: UUID, status: OperatorStatus
    ) -> asyncpg.Record:
        """Set the status; the grace rows change in the same transaction (fixes D-05).

        Same status as now → nothing changes (timestamp kept). No status row yet → one is
        created with the requested status, without grace logic (contract §6.3).
        """
        async with self.db.transaction() as conn:
            current = await conn.fetchrow(sql.LOCK_STATUS, tenant_id, operator_id)
            if current is None:
                if await conn.fetchval(sql.INSERT_STATUS, tenant_id, operator_id, status, uuid7()):
                    created = await conn.fetchrow(sql.GET_STATUS, tenant_id, operator_id)
                    assert created is not None  # inserted by this transaction
                    return created
                # A concurrent request created it first: continue as a normal change.
                current = await conn.fetchrow(sql.LOCK_STATUS, tenant_id, operator_id)
                if current is None:
                    raise NotFound("operator not found")
            if current["status"] == status:
                return current
            updated = await conn.fetchrow(sql.UPDATE_STATUS, tenant_id, operator_id, status)
            if status is OperatorStatus.OFFLINE:
                await conn.execute(
                    sql.START_GRACE_PERIODS, tenant_id, operator_id, self.grace_period, uuid7()
                )
            else:
                await conn.execute(sql.CANCEL_GRACE_PERIODS, tenant_id, operator_id)
            assert updated is not None  # the row is locked by this transaction
            return updated
