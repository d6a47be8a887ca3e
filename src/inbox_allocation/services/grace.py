"""Expired grace periods: release conversations of operators who stayed OFFLINE.

A conversation is released (back to QUEUED) only if, at release time, it is still ALLOCATED
to the grace row's operator and that operator is still OFFLINE (decisions.md; the original
released it regardless, D-04/D-48). Every expired row is removed either way. Each run drains
all expired rows, tenant by tenant and batch by batch (so every statement concerns one
tenant: one node of a distributed database); several service processes may sweep at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from inbox_allocation.db.pool import Database
from inbox_allocation.domain.enums import ConversationState, OperatorStatus
from inbox_allocation.logging import get_logger
from inbox_allocation.observability.metrics import record_grace_release
from inbox_allocation.sql import grace as sql
from inbox_allocation.sql import maintenance

log = get_logger(__name__)


@dataclass
class SweepResult:
    processed: int = 0  # expired rows removed
    released: int = 0  # conversations returned to the queue


class GraceSweeper:
    def __init__(self, db: Database, batch_size: int) -> None:
        self.db = db
        self.batch_size = batch_size

    async def sweep(self) -> SweepResult:
        """One run: for each tenant, batches until a batch finds nothing it can take."""
        total = SweepResult()
        for tenant in await self.db.fetch(maintenance.ALL_TENANT_IDS):
            while True:
                batch = await self._sweep_batch(tenant["id"])
                record_grace_release(batch.released)
                total.processed += batch.processed
                total.released += batch.released
                if batch.processed == 0:
                    break
        if total.processed:
            log.info("grace periods swept", processed=total.processed, released=total.released)
        return total

    async def _sweep_batch(self, tenant_id: UUID) -> SweepResult:
        async with self.db.transaction() as conn:
            candidates = await conn.fetch(sql.EXPIRED_CANDIDATES, tenant_id, self.batch_size)
            if not candidates:
                return SweepResult()
            operator_ids = sorted({row["operator_id"] for row in candidates})
            statuses = {
                row["operator_id"]: row["status"]
                for row in await conn.fetch(sql.LOCK_OPERATOR_STATUSES, tenant_id, operator_ids)
            }
            locked = await conn.fetch(
                sql.LOCK_EXPIRED, tenant_id, [row["id"] for row in candidates]
            )
            to_release = [
                row
                for row in locked
                if row["state"] == ConversationState.ALLOCATED
                and row["assigned_operator_id"] == row["operator_id"]
                and statuses.get(row["operator_id"]) == OperatorStatus.OFFLINE
            ]
            released = []
            if to_release:
                released = await conn.fetch(
                    sql.RELEASE,
                    tenant_id,
                    [row["conversation_id"] for row in to_release],
                    [row["operator_id"] for row in to_release],
                )
            if locked:
                await conn.execute(sql.DELETE_ROWS, tenant_id, [row["id"] for row in locked])
            return SweepResult(processed=len(locked), released=len(released))
