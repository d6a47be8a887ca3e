"""The quiet phase after the load: allocations with nothing else running.

With no concurrent request and no row lock, /allocate must hand out a QUEUED conversation of
the caller's inboxes whenever one exists, and one with the highest live priority
(docs/decisions.md#live-priority: the formula at that instant; ties: longest waiting, then id).

For each tenant, up to `rounds` times: read the QUEUED conversations and the AVAILABLE
operators under capacity, pick one whose inboxes hold some, rank them by the formula, call
/allocate and log the request with `expect` = {"check": "quiet_allocation", "top": best
priority, "priorities": {id: priority} of the 20 best}. The checker (invariant 11) then needs
nothing but the log.
"""

from __future__ import annotations

import math
import random
import time
from typing import Any

import asyncpg
import httpx

from stress.eventlog import EventLogWriter
from stress.load import API, Recorder
from stress.model import World

QUEUED = """
SELECT c.id::text AS id, c.inbox_id::text AS inbox_id, c.message_count,
       extract(epoch FROM c.last_message_at)::float8 AS last,
       t.priority_weight_alpha::float8 AS alpha, t.priority_weight_beta::float8 AS beta
FROM conversation_refs c
JOIN tenants t ON t.id = c.tenant_id
WHERE c.tenant_id = $1 AND c.state = 'QUEUED'
"""

# AVAILABLE operators of the tenant that may still receive a conversation.
TAKERS = """
SELECT o.id::text AS id
FROM operators o
JOIN operator_status s ON s.tenant_id = o.tenant_id AND s.operator_id = o.id
WHERE o.tenant_id = $1 AND s.status = 'AVAILABLE'
  AND (o.max_concurrent_conversations IS NULL
       OR o.max_concurrent_conversations > (
           SELECT count(*) FROM conversation_refs c
           WHERE c.tenant_id = o.tenant_id AND c.assigned_operator_id = o.id
             AND c.state = 'ALLOCATED'))
"""


def priority(*, count: int, last: float, at: float, alpha: float, beta: float) -> float:
    """The live priority: alpha·min(log10(count+1)/3, 1) + beta·min(hours waited / 24, 1)."""
    normalised_count = min(math.log10(count + 1) / 3, 1.0)
    normalised_delay = min((at - last) / 86400, 1.0)
    return alpha * normalised_count + beta * normalised_delay


async def quiet_allocations(
    *,
    conn: asyncpg.Connection,
    world: World,
    base_url: str,
    log: EventLogWriter,
    rounds: int,
    rng: random.Random,
) -> int:
    """Returns the number of allocations made."""
    recorder = Recorder(log, {})
    made = 0
    async with httpx.AsyncClient(base_url=base_url, timeout=60.0) as client:
        for tenant in world.tenants:
            for _ in range(rounds):
                queued = await conn.fetch(QUEUED, tenant.id)
                takers = {row["id"] for row in await conn.fetch(TAKERS, tenant.id)}
                inboxes_with_work = {row["inbox_id"] for row in queued}
                candidates = [
                    op
                    for op in tenant.staff
                    if op.id in takers and inboxes_with_work.intersection(op.inboxes)
                ]
                if not candidates:
                    break
                operator = rng.choice(candidates)
                at = time.time()
                ranked = sorted(
                    (
                        (
                            priority(
                                count=row["message_count"],
                                last=row["last"],
                                at=at,
                                alpha=row["alpha"],
                                beta=row["beta"],
                            ),
                            row,
                        )
                        for row in queued
                        if row["inbox_id"] in operator.inboxes
                    ),
                    key=lambda item: (-item[0], item[1]["last"], item[1]["id"]),
                )
                expect: dict[str, Any] = {
                    "check": "quiet_allocation",
                    "queued": len(ranked),
                    "top": ranked[0][0],
                    "priorities": {row["id"]: score for score, row in ranked[:20]},
                }
                await recorder.call(
                    client, operator, "quiet_allocate", "POST", f"{API}/allocate", expect=expect
                )
                made += 1
    log.flush()
    return made
