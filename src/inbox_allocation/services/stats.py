"""Queue statistics of a tenant: one aggregate query for all its inboxes (no N+1)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from inbox_allocation.db.pool import Database
from inbox_allocation.sql import stats as sql


class StatsService:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def inbox_stats(self, *, tenant_id: UUID) -> list[dict[str, Any]]:
        """Per inbox: queued, allocated, oldest queued wait (s, or None), available operators."""
        return [dict(row) for row in await self.db.fetch(sql.INBOX_STATS, tenant_id)]
