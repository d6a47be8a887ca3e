"""Weights changes at any size (services/priority_keys.py, migration 0009).

- PUT /tenant/weights changes the tenant row, then recomputes keys without waiting for any
  row: it succeeds while conversations of the tenant are locked (it used to lock every open
  conversation in one statement, F7), and on a small tenant the keys are current when it
  answers;
- a conversation ingested while the change commits gets the current keys once the worker
  has run (it used to keep the old weights' keys until its next message, F6);
- during the transition every queued conversation stays reachable by allocation, and once
  the worker has caught up the allocation order is exactly the contract's formula;
- the reported priority_score follows the current weights for every row (RESOLVED rows and
  rows not recomputed yet included, F26) and has at most 6 decimals (F27).
"""

from __future__ import annotations

import asyncio
import itertools
import random
import uuid
from datetime import datetime, timedelta

import asyncpg
import httpx

from inbox_allocation.db.pool import Database
from inbox_allocation.db.seed_ids import ACME, ACME_ADMIN, ACME_OP4, INBOX_SALES
from inbox_allocation.services.priority_keys import PriorityKeys
from inbox_allocation.sql import tenants as tenants_sql
from tests.support.http import headers
from tests.support.priority_reference import priority

TENANT = uuid.UUID(ACME)
WEIGHTS = "/api/v1/tenant/weights"


async def catch_up(db: asyncpg.Pool) -> None:
    await PriorityKeys(Database(db)).catch_up_tenant(TENANT)
    assert await PriorityKeys(Database(db)).stale(TENANT) == 0


async def queue_random(db: asyncpg.Pool, now: datetime, count: int, seed: int) -> None:
    """Only these conversations are QUEUED in Acme's Sales inbox (the seed's are resolved)."""
    rng = random.Random(seed)
    await db.execute("UPDATE conversation_refs SET state = 'RESOLVED', resolved_at = now() "
                     "WHERE state = 'QUEUED'")  # fmt: skip
    await db.executemany(
        "INSERT INTO conversation_refs (tenant_id, inbox_id, external_conversation_id, "
        "customer_phone_number, message_count, last_message_at) "
        "VALUES ($1, $2, $3, '+15550003333', $4, $5)",
        [
            (TENANT, uuid.UUID(INBOX_SALES), f"w-{n}", rng.randint(1, 300),
             now - timedelta(seconds=rng.uniform(0, 40 * 3600)))
            for n in range(count)
        ],
    )  # fmt: skip


async def drain(client: httpx.AsyncClient) -> list[dict[str, object]]:
    """Allocate until nothing is left; the conversations in allocation order."""
    taken: list[dict[str, object]] = []
    while True:
        response = await client.post("/api/v1/allocate", headers=headers(ACME_OP4))
        if response.status_code != 200:
            assert response.json()["error"]["code"] == "NO_CONVERSATIONS_AVAILABLE"
            return taken
        taken.append(response.json()["data"])


async def test_f7_weights_change_locks_no_conversation(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    async with db.acquire() as holder, holder.transaction():
        await holder.execute(
            "SELECT 1 FROM conversation_refs WHERE tenant_id = $1 FOR NO KEY UPDATE", TENANT
        )
        # Would wait for the holder (forever here) if the change locked the conversations.
        changed = await asyncio.wait_for(
            client.put(WEIGHTS, headers=headers(ACME_ADMIN), json={"alpha": 0.2, "beta": 0.8}),
            timeout=10,
        )
        assert changed.status_code == 200
        # The locked rows are skipped, never waited for.
        assert await PriorityKeys(Database(db)).catch_up_tenant(TENANT) == 0
    await catch_up(db)


async def test_f6_conversation_ingested_during_the_change_gets_current_keys(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    async with db.acquire() as weights:
        transaction = weights.transaction()
        await transaction.start()
        await weights.fetchrow(  # the service's own statement, left uncommitted
            tenants_sql.UPDATE_WEIGHTS, TENANT, 0.1, 0.9, uuid.UUID(ACME_ADMIN)
        )
        ingested = await client.post(
            "/api/v1/conversations", headers=headers(ACME_ADMIN),
            json={"inbox_id": INBOX_SALES, "external_conversation_id": "racing",
                  "customer_phone_number": "+15550001111"},
        )  # fmt: skip
        assert ingested.status_code == 201, ingested.text
        await transaction.commit()
    conversation = uuid.UUID(ingested.json()["data"]["id"])
    stale = await db.fetchval(
        "SELECT c.weights_version < t.weights_version FROM conversation_refs c "
        "JOIN tenants t ON t.id = c.tenant_id WHERE c.id = $1",
        conversation,
    )
    assert stale  # its trigger read the weights of before the commit
    await catch_up(db)
    row = await db.fetchrow(
        "SELECT priority_young_key, priority_aged_key, message_count, "
        "extract(epoch FROM last_message_at)::float8 AS last FROM conversation_refs "
        "WHERE id = $1",
        conversation,
    )
    assert row is not None
    assert abs(row["priority_aged_key"] - 0.1 * (0.30103 / 3)) < 1e-4
    assert (
        abs(row["priority_young_key"] - (row["priority_aged_key"] - 0.9 * row["last"] / 86400))
        < 1e-6
    )


async def test_every_queued_conversation_stays_reachable_during_the_transition(
    client: httpx.AsyncClient, db: asyncpg.Pool, pinned_clock: datetime
) -> None:
    await queue_random(db, pinned_clock, 40, seed=1)
    # The change as committed by PUT before any key is recomputed (what a deep queue looks
    # like for a while); beta rises: the young keys of old rows lie above any young key of
    # the new weights.
    await db.fetchrow(tenants_sql.UPDATE_WEIGHTS, TENANT, 0.1, 0.9, uuid.UUID(ACME_ADMIN))
    assert await PriorityKeys(Database(db)).stale(TENANT) > 0
    assert len(await drain(client)) == 40


async def test_the_order_is_exact_once_the_worker_has_caught_up(
    client: httpx.AsyncClient, db: asyncpg.Pool, pinned_clock: datetime
) -> None:
    await queue_random(db, pinned_clock, 40, seed=2)
    for alpha, beta in ((0.1, 0.9), (0.8, 0.2)):
        changed = await client.put(WEIGHTS, headers=headers(ACME_ADMIN),
                                   json={"alpha": alpha, "beta": beta})  # fmt: skip
        assert changed.status_code == 200
    await catch_up(db)
    rows = await db.fetch(
        "SELECT id::text, message_count, last_message_at FROM conversation_refs "
        "WHERE tenant_id = $1 AND state = 'QUEUED'",
        TENANT,
    )
    expected = {
        row["id"]: priority(message_count=row["message_count"],
                            last_message_at=row["last_message_at"], at=pinned_clock,
                            alpha=0.8, beta=0.2)
        for row in rows
    }  # fmt: skip
    taken = await drain(client)
    assert len(taken) == len(expected)
    scores = [expected[str(item["id"])] for item in taken]
    assert all(a >= b - 1e-9 for a, b in itertools.pairwise(scores)), scores
    for item in taken:
        assert abs(float(str(item["priority_score"])) - expected[str(item["id"])]) < 1e-6


async def test_a_small_tenant_has_current_keys_when_the_change_answers(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    changed = await client.put(
        WEIGHTS, headers=headers(ACME_ADMIN), json={"alpha": 0.3, "beta": 0.7}
    )
    assert changed.status_code == 200
    assert await PriorityKeys(Database(db)).stale(TENANT) == 0


async def test_f26_f27_reported_priority_follows_the_current_weights(
    client: httpx.AsyncClient, db: asyncpg.Pool, pinned_clock: datetime
) -> None:
    changed = await client.put(
        WEIGHTS, headers=headers(ACME_ADMIN), json={"alpha": 0.9, "beta": 0.1}
    )
    assert changed.status_code == 200
    listed = await client.get("/api/v1/conversations?per_page=100", headers=headers(ACME_ADMIN))
    assert listed.status_code == 200
    rows = {
        str(row["id"]): row
        for row in await db.fetch(
            "SELECT id, message_count, last_message_at FROM conversation_refs WHERE tenant_id = $1",
            TENANT,
        )
    }
    states = set()
    for item in listed.json()["data"]["conversations"]:  # RESOLVED ones included
        row = rows[item["id"]]
        states.add(item["state"])
        expected = priority(message_count=row["message_count"],
                            last_message_at=row["last_message_at"], at=pinned_clock,
                            alpha=0.9, beta=0.1)  # fmt: skip
        assert abs(item["priority_score"] - expected) < 1e-5, item
        assert item["priority_score"] == round(item["priority_score"], 6)
    assert "RESOLVED" in states
