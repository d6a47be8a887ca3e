"""The aged flag and its sweeper (migration 0005): an index hint that never changes answers.

Writes set the flag and the sweeper flags queued rows as they cross 24 h 5 min, by the
database's clock. A flag is never set early, but may be late (between sweeps) or look early
to a caller whose clock is behind; allocation gives the exact order in both cases.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
from fastapi import FastAPI

from inbox_allocation.app import create_app
from inbox_allocation.config import Settings
from inbox_allocation.db.seed_ids import (
    ACME,
    ACME_MANAGER,
    ACME_OP4,
    INBOX_SALES,
    INBOX_TECH_GENERAL,
    TECHSTART,
)
from inbox_allocation.services.queue_aging import QueueAging
from tests.support.http import headers
from tests.support.priority_reference import allocation_order_key


async def insert(
    db: asyncpg.Pool,
    external: str,
    waited: timedelta,
    *,
    tenant: str = ACME,
    inbox: str = INBOX_SALES,
    messages: int = 1,
) -> uuid.UUID:
    conversation_id: uuid.UUID = await db.fetchval(
        "INSERT INTO conversation_refs (tenant_id, inbox_id, external_conversation_id, "
        "customer_phone_number, message_count, last_message_at) "
        "VALUES ($1, $2, $3, '+15550007777', $4, now() - $5::interval) RETURNING id",
        uuid.UUID(tenant), uuid.UUID(inbox), external, messages, waited,
    )  # fmt: skip
    return conversation_id


async def aged_flag(db: asyncpg.Pool, conversation_id: uuid.UUID) -> bool:
    flag: bool = await db.fetchval(
        "SELECT aged FROM conversation_refs WHERE id = $1", conversation_id
    )
    return flag


async def test_writes_set_the_flag(client: httpx.AsyncClient, db: asyncpg.Pool) -> None:
    old = await insert(db, "aging-old", timedelta(hours=30))
    new = await insert(db, "aging-new", timedelta(hours=2))
    assert await aged_flag(db, old) is True
    assert await aged_flag(db, new) is False
    # A new message makes the conversation young again.
    response = await client.post(
        "/api/v1/conversations",
        headers=headers(ACME_MANAGER),
        json={"inbox_id": INBOX_SALES, "external_conversation_id": "aging-old",
              "customer_phone_number": "+15550007777"},
    )  # fmt: skip
    assert response.status_code == 200, response.text
    assert await aged_flag(db, old) is False


async def test_sweep_flags_queued_conversations_that_crossed_a_day(
    app: FastAPI, db: asyncpg.Pool
) -> None:
    crossed = await insert(db, "aging-crossed", timedelta(hours=24, minutes=6))
    young = await insert(db, "aging-young", timedelta(hours=24, minutes=4))
    allocated = await insert(db, "aging-allocated", timedelta(hours=30))
    other_tenant = await insert(
        db, "aging-techstart", timedelta(hours=26), tenant=TECHSTART, inbox=INBOX_TECH_GENERAL
    )
    await db.execute(
        "UPDATE conversation_refs SET state = 'ALLOCATED', assigned_operator_id = $2 "
        "WHERE id = $1", allocated, uuid.UUID(ACME_OP4),
    )  # fmt: skip
    # As if they had crossed 24 h while queued, after their last write.
    await db.execute("UPDATE conversation_refs SET aged = false")

    aging = QueueAging(app.state.db)
    assert await aging.sweep() >= 2  # the seed data has old queued rows of its own
    assert await aged_flag(db, crossed) is True
    assert await aged_flag(db, other_tenant) is True
    assert await aged_flag(db, young) is False
    assert await aged_flag(db, allocated) is False  # only the queue is swept
    assert await aging.sweep() == 0
    assert (
        await db.fetchval(
            "SELECT count(*) FROM conversation_refs WHERE state = 'QUEUED' AND NOT aged "
            "AND last_message_at <= now() - interval '24 hours 5 minutes'"
        )
        == 0
    )


async def allocation_order(client: httpx.AsyncClient, db: asyncpg.Pool, count: int) -> list[str]:
    """External ids of `count` successive allocations to ACME_OP4."""
    allocated = []
    for _ in range(count):
        response = await client.post("/api/v1/allocate", headers=headers(ACME_OP4))
        assert response.status_code == 200, response.text
        allocated.append(
            await db.fetchval(
                "SELECT external_conversation_id FROM conversation_refs WHERE id = $1",
                uuid.UUID(response.json()["data"]["id"]),
            )
        )
    return allocated


async def queue_mix(db: asyncpg.Pool, now: datetime) -> list[str]:
    """Only these QUEUED conversations in Acme (young and aged, near and far from the 24 h
    line, few and many messages); returns their external ids in allocation order at `now`."""
    await db.execute("UPDATE conversation_refs SET state = 'RESOLVED', resolved_at = now() "
                     "WHERE state = 'QUEUED'")  # fmt: skip
    waits = [(1, 40), (5, 3), (23, 1), (23.99, 7), (24.02, 7), (25, 2), (30, 90), (47, 1),
             (70, 12), (0.1, 999)]  # fmt: skip
    for n, (hours, messages) in enumerate(waits):
        await db.execute(
            "INSERT INTO conversation_refs (tenant_id, inbox_id, external_conversation_id, "
            "customer_phone_number, message_count, last_message_at) "
            "VALUES ($1, $2, $3, '+15550007777', $4, $5)",
            uuid.UUID(ACME), uuid.UUID(INBOX_SALES), f"mix-{n}", messages,
            now - timedelta(hours=hours),
        )  # fmt: skip
    rows = await db.fetch(
        "SELECT id::text, external_conversation_id, message_count, last_message_at "
        "FROM conversation_refs WHERE state = 'QUEUED'"
    )
    return [
        row["external_conversation_id"]
        for row in sorted(rows, key=lambda row: allocation_order_key(
            message_count=row["message_count"], last_message_at=row["last_message_at"],
            id=row["id"], at=now, alpha=0.6, beta=0.4,
        ))
    ]  # fmt: skip


async def test_allocation_is_exact_while_flags_are_late(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    expected = await queue_mix(db, datetime.now(UTC))
    await db.execute("UPDATE conversation_refs SET aged = false")  # no sweep for days
    assert await allocation_order(client, db, len(expected)) == expected


async def test_allocation_is_exact_for_a_caller_clock_behind_the_database(
    app: FastAPI, client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    """Rows flagged by the database's clock can still be young at the caller's instant."""
    behind = datetime.now(UTC) - timedelta(days=2)
    expected = await queue_mix(db, behind)
    assert await db.fetchval("SELECT count(*) FROM conversation_refs WHERE aged") >= 8
    app.state.clock = lambda: behind
    try:
        assert await allocation_order(client, db, len(expected)) == expected
    finally:
        del app.state.clock


async def test_the_service_runs_the_sweeper(settings: Settings, db: asyncpg.Pool) -> None:
    crossed = await insert(db, "aging-by-worker", timedelta(hours=25))
    await db.execute("UPDATE conversation_refs SET aged = false WHERE id = $1", crossed)
    fast = settings.model_copy(update={"queue_aging_interval": timedelta(milliseconds=100)})
    application = create_app(fast)
    async with application.router.lifespan_context(application):
        for _ in range(100):
            if await aged_flag(db, crossed):
                break
            await asyncio.sleep(0.05)
    assert await aged_flag(db, crossed) is True
