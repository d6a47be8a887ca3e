"""Retention of the event outbox: events older than EVENTS_RETENTION are deleted.

Safe in every replica at once: it works tenant by tenant in bounded batches, each batch one
short transaction that deletes a prefix (in cursor order) of the tenant's expired events and
moves the tenant's purge position forward (never back). Two replicas purging the same
tenant delete the same rows at worst twice; nothing else is ever touched. Deleting a prefix
in cursor order, not by age alone, keeps the purge position exact: a cursor at or above it
has lost nothing, a cursor below it is answered 410 EVENT_CURSOR_EXPIRED.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from inbox_allocation.db.pool import Database
from inbox_allocation.logging import get_logger
from inbox_allocation.sql import events as sql
from inbox_allocation.sql import maintenance
from inbox_allocation.sql import webhooks as webhook_sql

log = get_logger(__name__)

BATCH_SIZE = 1000


class EventRetention:
    def __init__(self, db: Database, retention: timedelta) -> None:
        self.db = db
        self.retention = retention

    async def purge(self, now: datetime | None = None) -> int:
        """Delete every tenant's expired events; returns how many were deleted."""
        cutoff = (now or datetime.now(UTC)) - self.retention
        deleted = 0
        for tenant in await self.db.fetch(maintenance.ALL_TENANT_IDS):
            deleted += await self.purge_tenant(tenant["id"], cutoff)
        if deleted:
            log.info("expired events deleted", count=deleted)
        return deleted

    async def purge_tenant(self, tenant_id: object, cutoff: datetime) -> int:
        # The webhook delivery log is kept as long as the events.
        await self.db.execute(webhook_sql.PURGE_DELIVERIES, tenant_id, cutoff)
        deleted = 0
        while True:
            async with self.db.transaction() as conn:
                head = await conn.fetch(sql.OLDEST, tenant_id, cutoff, BATCH_SIZE)
                prefix = 0
                while prefix < len(head) and head[prefix]["expired"]:
                    prefix += 1
                if prefix == 0:
                    return deleted
                last = head[prefix - 1]
                status = await conn.execute(sql.DELETE_UP_TO, tenant_id, last["xid"], last["seq"])
                await conn.execute(sql.RECORD_PURGE, tenant_id, last["xid"], last["seq"])
            deleted += int(status.split()[-1])
            if prefix < BATCH_SIZE:
                return deleted
