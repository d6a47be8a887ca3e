"""The event cursor is commit-safe: out-of-order commits never make a reader skip or repeat.

Events are inserted straight into the outbox by transactions on real connections that commit
in an order other than the one they started in; a reader pages through GET /api/v1/events
meanwhile, and then resumes from every page boundary it saw.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import asyncpg
import httpx
import pytest

from inbox_allocation.db.seed_ids import ACME as TENANT
from inbox_allocation.db.seed_ids import ACME_ADMIN
from inbox_allocation.db.seed_ids import TECHSTART as OTHER_TENANT

ADMIN = {"X-Tenant-ID": TENANT, "X-Operator-ID": ACME_ADMIN}

pytestmark = pytest.mark.asyncio(loop_scope="session")

INSERT = """
INSERT INTO events (tenant_id, type, operator_id, data)
VALUES ($1, 'operator.status_changed', $2, jsonb_build_object('n', $3::int))
RETURNING xid, seq
"""


async def page(client: httpx.AsyncClient, after: str, limit: int = 100) -> dict[str, Any]:
    response = await client.get(
        "/api/v1/events", params={"after": after, "limit": limit}, headers=ADMIN
    )
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def start_cursor(client: httpx.AsyncClient) -> str:
    response = await client.get("/api/v1/events", headers=ADMIN)
    assert response.status_code == 200
    body = response.json()["data"]
    assert body["events"] == []
    cursor: str = body["next_after"]
    return cursor


async def read_to_end(
    client: httpx.AsyncClient, after: str, limit: int
) -> tuple[list[int], list[str]]:
    """Every event after `after` (until an empty page), and each page's next_after."""
    numbers: list[int] = []
    boundaries: list[str] = []
    while True:
        body = await page(client, after, limit)
        numbers += [event["data"]["n"] for event in body["events"]]
        ids = [event["id"] for event in body["events"]]
        assert ids == sorted(ids)
        assert all(i > after for i in ids)
        after = body["next_after"]
        boundaries.append(after)
        if not body["events"]:
            return numbers, boundaries


async def test_a_later_transaction_committing_first_is_held_back(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    start = await start_cursor(client)
    async with db.acquire() as first, db.acquire() as second:
        early = first.transaction()
        await early.start()
        await first.fetchrow(INSERT, TENANT, None, 1)  # the lower xid, still open
        await second.fetchrow(INSERT, TENANT, None, 2)  # commits at once
        # With a plain sequence the reader would get 2 now and later skip 1.
        body = await page(client, start)
        assert body["events"] == []
        assert body["next_after"] >= start
        await early.commit()
    numbers, _ = await read_to_end(client, start, 100)
    assert numbers == [1, 2]


async def test_a_rolled_back_event_is_never_delivered(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    start = await start_cursor(client)
    async with db.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        await conn.fetchrow(INSERT, TENANT, None, 1)
        await db.fetchrow(INSERT, TENANT, None, 2)
        await transaction.rollback()
    numbers, _ = await read_to_end(client, start, 100)
    assert numbers == [2]


async def test_concurrent_writers_reader_resumes_from_every_boundary_exactly_once(
    client: httpx.AsyncClient, db: asyncpg.Pool, dsn: str
) -> None:
    start = await start_cursor(client)
    rng = random.Random(14)
    counter = iter(range(1, 1_000_000))
    committed: list[tuple[int, int, int]] = []  # (xid, seq, n)
    writers_done = asyncio.Event()

    async def writer() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            for _ in range(15):
                async with conn.transaction():
                    rows = []
                    for _ in range(rng.randint(1, 3)):
                        n = next(counter)
                        tenant = OTHER_TENANT if n % 7 == 0 else TENANT
                        row = await conn.fetchrow(INSERT, tenant, None, n)
                        assert row is not None
                        if tenant == TENANT:
                            rows.append((row["xid"], row["seq"], n))
                        # Hold the transaction open a while: later ones commit first.
                        await asyncio.sleep(rng.random() * 0.02)
                committed.extend(rows)
        finally:
            await conn.close()

    seen: list[int] = []
    boundaries: list[str] = [start]

    async def reader() -> None:
        after = start
        while True:
            finishing = writers_done.is_set()
            body = await page(client, after, 4)
            seen.extend(event["data"]["n"] for event in body["events"])
            after = body["next_after"]
            boundaries.append(after)
            if finishing and not body["events"]:
                return
            await asyncio.sleep(0.003)

    reading = asyncio.create_task(reader())
    await asyncio.gather(*(writer() for _ in range(8)))
    writers_done.set()
    await reading

    in_order = [n for _, _, n in sorted(committed)]
    assert len(in_order) > 150
    # Exactly once each, in cursor order, although commits happened out of order.
    assert seen == in_order
    # Resuming from every boundary the reader passed gives exactly the rest.
    cursor_of = {n: f"{xid:016x}{seq:016x}" for xid, seq, n in committed}
    for boundary in set(boundaries):
        rest, _ = await read_to_end(client, boundary, 50)
        assert rest == [n for n in in_order if cursor_of[n] > boundary]
