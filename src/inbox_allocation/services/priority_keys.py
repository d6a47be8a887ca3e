"""Priority keys after a weights change: recomputed in the background, in small batches.

PUT /tenant/weights changes one row (the tenant's weights and `weights_version`, migration
0009), then recomputes for up to a second itself (a tenant of up to some tens of thousands
of conversations has the new order when the PUT answers). The rest keep the keys they have
until this worker recomputes them: batches of
`BATCH` rows of an older version, each its own short statement that skips locked rows, tenant
by tenant, until a batch finds nothing. Every replica runs it; SKIP LOCKED lets several
share the work. A conversation ingested while the change was committing (its key trigger
read the old weights) carries the old version and is found by the next run.

Allocation order during the transition. Allocation compares candidates by their keys with
the current weights; the keys of a row not recomputed yet carry the weights of its version.
Within each class (young: waiting under 24 h, aged: 24 h or more) an inbox's scan returns the
highest key, so:
- rows of one version are served in the order of that version's weights;
- young rows of an older version with a smaller beta have larger young keys: they are served
  before the recomputed young rows of their inbox (their priority is then bounded by alpha·g
  + beta, the aged formula); with a larger beta they are served after them;
- aged rows compare alpha·g of their own version.
Nothing is unreachable (the young scan has no upper bound on the key). Once no row of an
older version is left — at most one run after the last conversation of the tenant has been
written — the order is exact again (tests/services/test_weights_versions.py; `make bench` measures
the transition at 1M queued).
"""

from __future__ import annotations

import asyncio
import time
from uuid import UUID

from inbox_allocation.db.pool import Database
from inbox_allocation.logging import get_logger
from inbox_allocation.sql import maintenance
from inbox_allocation.sql import priority_keys as sql

log = get_logger(__name__)

# Rows per statement: each statement stays in the low milliseconds, so an allocator skips a
# locked row only briefly and never waits.
BATCH = 500
# The worker pauses this many times the duration of each batch: the recompute takes at most
# about half of one connection's time, so allocation keeps most of the machine.
WORKER_PACE = 1.0


class PriorityKeys:
    def __init__(self, db: Database, batch: int = BATCH) -> None:
        self.db = db
        self.batch = batch

    async def catch_up(self) -> int:
        """One run over every tenant; returns the number of rows recomputed."""
        total = 0
        for row in await self.db.fetch(maintenance.ALL_TENANT_IDS):
            total += await self.catch_up_tenant(row["id"], pace=WORKER_PACE)
        return total

    async def catch_up_tenant(
        self, tenant_id: UUID, until: float | None = None, pace: float = 0.0
    ) -> int:
        """Batches until one recomputes nothing (rows locked meanwhile wait for a later run)
        or, with `until` (time.monotonic()), until then. `pace`: after each batch, pause
        `pace` times as long as the batch took (the background worker leaves the database
        to the requests half of the time)."""
        done = 0
        while until is None or time.monotonic() < until:
            started = time.monotonic()
            status = await self.db.execute(sql.RECOMPUTE_BATCH, tenant_id, self.batch)
            count = int(status.rsplit(" ", 1)[1])
            done += count
            if count == 0:
                break
            if pace:
                await asyncio.sleep(pace * (time.monotonic() - started))
        if done:
            log.info("priority keys recomputed", tenant_id=str(tenant_id), rows=done)
        return done

    async def stale(self, tenant_id: UUID) -> int:
        """Conversations of the tenant whose keys still carry older weights."""
        count: int = await self.db.fetchval(sql.STALE_COUNT, tenant_id)
        return count
