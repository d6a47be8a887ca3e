"""Which conversation rows an allocation locks, and the answer when the best one is held.

The allocation statement reads the best row of every subscribed inbox and priority class
without a lock, then locks only the best of them; only when another transaction holds that
row does it lock, per inbox and class, the best row it can take (sql/allocation.py). These
tests hold rows from a second real connection while /allocate runs.
"""

from __future__ import annotations

import time
import uuid

import asyncpg
import httpx

from inbox_allocation.db.seed_ids import ACME, ACME_OP4, TECH_OP14, TECHSTART, conversation
from inbox_allocation.sql.allocation import ALLOCATE_NEXT
from tests.support.http import headers


async def allocate(client: httpx.AsyncClient, operator: str, tenant: str = ACME) -> str:
    response = await client.post("/api/v1/allocate", headers=headers(operator, tenant))
    assert response.status_code == 200, response.text
    return str(response.json()["data"]["id"])


async def test_a_held_best_row_gives_the_next_in_order_then_comes_back(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    # Operator 04's queue (inbox 1) in allocation order: conversations 4, 2, 1, 3. Another
    # transaction holds 4 (as a concurrent allocation or an inbound message would): the
    # allocation passes it over and takes the next one, exactly as if 4 were not there.
    async with db.acquire() as holder, holder.transaction():
        await holder.execute(
            "SELECT 1 FROM conversation_refs WHERE tenant_id = $1 AND id = $2 FOR NO KEY UPDATE",
            uuid.UUID(ACME),
            uuid.UUID(conversation(4)),
        )
        assert await allocate(client, ACME_OP4) == conversation(2)
    # Released (nothing changed): it is the best again, and the order goes on.
    assert await allocate(client, ACME_OP4) == conversation(4)
    assert await allocate(client, ACME_OP4) == conversation(1)
    assert await allocate(client, ACME_OP4) == conversation(3)


async def test_an_allocation_locks_only_the_row_it_takes(db: asyncpg.Pool) -> None:
    # Operator 14 is subscribed to two inboxes that both hold QUEUED conversations. While its
    # allocation's transaction is open, every other QUEUED row of those inboxes can still be
    # locked by someone else: the statement held no candidate it did not take.
    tenant = uuid.UUID(TECHSTART)
    queued_of_op14 = """
        SELECT c.id FROM conversation_refs c
        JOIN operator_inbox_subscriptions s
          ON s.tenant_id = c.tenant_id AND s.inbox_id = c.inbox_id AND s.operator_id = $2
        WHERE c.tenant_id = $1 AND c.state = 'QUEUED'
    """
    async with db.acquire() as other:
        queued = {r["id"] for r in await other.fetch(queued_of_op14, tenant, uuid.UUID(TECH_OP14))}
        inboxes = await other.fetchval(
            "SELECT count(DISTINCT c.inbox_id) FROM conversation_refs c WHERE c.tenant_id = $1"
            " AND c.state = 'QUEUED' AND c.id = ANY($2::uuid[])",
            tenant,
            list(queued),
        )
        assert inboxes >= 2  # otherwise the test could not tell one lock from one per inbox
        async with db.acquire() as allocator, allocator.transaction():
            taken = await allocator.fetchrow(
                ALLOCATE_NEXT, tenant, uuid.UUID(TECH_OP14), time.time(), True
            )
            assert taken is not None
            async with other.transaction():
                free = {
                    r["id"]
                    for r in await other.fetch(
                        "SELECT c.id FROM conversation_refs c WHERE c.tenant_id = $1"
                        " AND c.id = ANY($2::uuid[]) FOR NO KEY UPDATE SKIP LOCKED",
                        tenant,
                        list(queued),
                    )
                }
            assert free == queued - {taken["id"]}
