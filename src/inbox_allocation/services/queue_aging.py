"""Queue aging: flag QUEUED conversations as they cross 24 h (and 5 min) of waiting.

Allocation reads an inbox's young conversations from the part of the young-key index whose
rows are not flagged `aged` (migration 0005). Writes set the flag; this sweeper catches the
rows that cross the line while they sit in the queue. A row it has not flagged yet costs
allocation a little more reading, never a wrong answer, so a late or failed run is harmless.
"""

from __future__ import annotations

from inbox_allocation.db.pool import Database
from inbox_allocation.logging import get_logger
from inbox_allocation.sql import maintenance
from inbox_allocation.sql import queue_aging as sql

log = get_logger(__name__)

ROWS_PER_INBOX = 500  # per statement: keeps each statement (and its row locks) short


class QueueAging:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def sweep(self) -> int:
        """One run: for each tenant, statements until one finds nothing left to flag;
        returns rows flagged."""
        flagged = 0
        for tenant in await self.db.fetch(maintenance.ALL_TENANT_IDS):
            while True:
                status = await self.db.execute(sql.FLAG_AGED, tenant["id"], ROWS_PER_INBOX)
                count = int(status.rsplit(" ", 1)[1])
                flagged += count
                if count == 0:
                    break
        if flagged:
            log.debug("queued conversations flagged as aged", flagged=flagged)
        return flagged
