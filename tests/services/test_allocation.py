"""POST /allocate and /claim: priority order, every error code, and races."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import asyncpg
import httpx

from inbox_allocation.api.schemas.conversations import Allocation
from inbox_allocation.api.schemas.envelope import Envelope
from inbox_allocation.db.seed_ids import (
    ACME,
    ACME_MANAGER,
    ACME_OP4,
    ACME_OP6_OFFLINE,
    ACME_OP7,
    ACME_OP10,
    TECH_OP14,
    TECHSTART,
    conversation,
)
from tests.support.http import error_code, headers


async def allocate(client: httpx.AsyncClient, operator: str, tenant: str = ACME) -> httpx.Response:
    return await client.post("/api/v1/allocate", headers=headers(operator, tenant))


async def claim(client: httpx.AsyncClient, operator: str, conversation_id: str) -> httpx.Response:
    return await client.post(
        "/api/v1/claim", headers=headers(operator), json={"conversation_id": conversation_id}
    )


async def test_allocate_follows_priority_order(client: httpx.AsyncClient) -> None:
    # The demo data: operator 04 (inbox 1) gets 04, then 02, 01, 03.
    received = []
    for _ in range(4):
        response = await allocate(client, ACME_OP4)
        assert response.status_code == 200
        body = Envelope[Allocation].model_validate(response.json())
        assert str(body.data.assigned_operator_id) == ACME_OP4
        assert body.data.state == "ALLOCATED"
        assert body.data.allocated_at == body.data.updated_at
        received.append(str(body.data.id))
    assert received == [conversation(n) for n in (4, 2, 1, 3)]
    empty = await allocate(client, ACME_OP4)
    assert empty.status_code == 404
    assert error_code(empty) == "NO_CONVERSATIONS_AVAILABLE"


async def test_allocate_spans_all_subscribed_inboxes(client: httpx.AsyncClient) -> None:
    first = await allocate(client, TECH_OP14, TECHSTART)  # inboxes 4 and 5
    assert first.json()["data"]["id"] == conversation(41)  # 0.78 beats 0.69 and 0.67


async def test_allocate_persists_the_assignment(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    response = await allocate(client, ACME_OP10)
    row = await db.fetchrow(
        "SELECT state::text, assigned_operator_id::text FROM conversation_refs WHERE id = $1",
        uuid.UUID(response.json()["data"]["id"]),
    )
    assert row is not None
    assert (row["state"], row["assigned_operator_id"]) == ("ALLOCATED", ACME_OP10)


async def test_allocate_errors(client: httpx.AsyncClient, db: asyncpg.Pool) -> None:
    offline = await allocate(client, ACME_OP6_OFFLINE)
    assert (offline.status_code, error_code(offline)) == (400, "OPERATOR_NOT_AVAILABLE")

    await db.execute("DELETE FROM operator_status WHERE operator_id = $1", uuid.UUID(ACME_OP10))
    no_status = await allocate(client, ACME_OP10)  # no status row = not available
    assert (no_status.status_code, error_code(no_status)) == (400, "OPERATOR_NOT_AVAILABLE")

    await db.execute(
        "DELETE FROM operator_inbox_subscriptions WHERE operator_id = $1", uuid.UUID(ACME_OP7)
    )
    unsubscribed = await allocate(client, ACME_OP7)
    assert (unsubscribed.status_code, error_code(unsubscribed)) == (400, "NO_SUBSCRIPTIONS")

    foreign = await allocate(client, TECH_OP14, ACME)  # operator of another tenant
    assert (foreign.status_code, error_code(foreign)) == (401, "UNAUTHORIZED")

    missing = await client.post("/api/v1/allocate", headers={"X-Tenant-ID": ACME})
    assert (missing.status_code, error_code(missing)) == (400, "OPERATOR_REQUIRED")


async def test_allocate_ignores_any_body(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/allocate", headers=headers(ACME_OP4), content=b"{not json"
    )
    assert response.status_code == 200


async def _queue_with_operators(db: asyncpg.Pool, conversations: int, operators: int) -> list[str]:
    """A fresh tenant with one inbox, `conversations` QUEUED and `operators` AVAILABLE."""
    tenant, inbox = uuid.uuid4(), uuid.uuid4()
    operator_ids = [uuid.uuid4() for _ in range(operators)]
    async with db.acquire() as conn, conn.transaction():
        await conn.execute("INSERT INTO tenants (id, name) VALUES ($1, $2)", tenant, str(tenant))
        await conn.execute(
            "INSERT INTO inboxes (id, tenant_id, phone_number, display_name) "
            "VALUES ($1, $2, '+15550000001', 'Race')",
            inbox,
            tenant,
        )
        await conn.executemany(
            "INSERT INTO operators (id, tenant_id) VALUES ($1, $2)",
            [(op, tenant) for op in operator_ids],
        )
        await conn.executemany(
            "INSERT INTO operator_status (tenant_id, operator_id, status) "
            "SELECT tenant_id, id, 'AVAILABLE' FROM operators WHERE id = $1",
            [(op,) for op in operator_ids],
        )
        await conn.executemany(
            "INSERT INTO operator_inbox_subscriptions (tenant_id, operator_id, inbox_id) "
            "SELECT tenant_id, id, $2 FROM operators WHERE id = $1",
            [(op, inbox) for op in operator_ids],
        )
        await conn.executemany(
            "INSERT INTO conversation_refs (tenant_id, inbox_id, external_conversation_id, "
            "customer_phone_number, priority_score) VALUES ($1, $2, $3, '+15551110000', $4)",
            [(tenant, inbox, f"race-{n}", n / 100) for n in range(conversations)],
        )
    return [str(tenant), *map(str, operator_ids)]


async def test_forty_concurrent_allocations_of_twenty_five(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    tenant, *operators = await _queue_with_operators(db, conversations=25, operators=40)
    responses = await asyncio.gather(*(allocate(client, op, tenant) for op in operators))
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: 25, 404: 15}
    assert all(
        error_code(r) == "NO_CONVERSATIONS_AVAILABLE" for r in responses if r.status_code == 404
    )
    won = [r.json()["data"]["id"] for r in responses if r.status_code == 200]
    assert len(set(won)) == 25  # never the same conversation twice
    rows = await db.fetch(
        "SELECT id::text, assigned_operator_id::text FROM conversation_refs "
        "WHERE tenant_id = $1 AND state = 'ALLOCATED'",
        uuid.UUID(tenant),
    )
    assert len(rows) == 25
    by_conversation = {r.json()["data"]["id"]: r.json()["data"]["assigned_operator_id"]
                       for r in responses if r.status_code == 200}  # fmt: skip
    assert {row["id"]: row["assigned_operator_id"] for row in rows} == by_conversation


async def test_claim_takes_a_queued_conversation(client: httpx.AsyncClient) -> None:
    response = await claim(client, ACME_OP4, conversation(3))
    assert response.status_code == 200
    body = Envelope[Allocation].model_validate(response.json())
    assert str(body.data.assigned_operator_id) == ACME_OP4
    again = await claim(client, ACME_OP4, conversation(3))  # own conversation: idempotent
    assert again.status_code == 200
    assert again.json()["data"]["id"] == conversation(3)


async def test_claim_errors(client: httpx.AsyncClient, db: asyncpg.Pool) -> None:
    cases = [
        (ACME_OP4, conversation(6), 409, "CONVERSATION_NOT_QUEUED"),  # allocated to 05
        (ACME_OP4, conversation(8), 409, "CONVERSATION_NOT_QUEUED"),  # resolved
        (ACME_OP4, conversation(16), 403, "NOT_SUBSCRIBED_TO_INBOX"),  # inbox 2
        (ACME_OP4, conversation(39), 404, "NOT_FOUND"),  # TechStart's
        (ACME_OP4, str(uuid.uuid4()), 404, "NOT_FOUND"),
        (ACME_OP6_OFFLINE, conversation(1), 400, "OPERATOR_NOT_AVAILABLE"),
    ]
    for operator, target, status, code in cases:
        response = await claim(client, operator, target)
        assert (response.status_code, error_code(response)) == (status, code), target
    for body, status, code in [
        ({}, 400, "VALIDATION_ERROR"),
        ({"conversation_id": None}, 400, "VALIDATION_ERROR"),
        ({"conversation_id": "00000000-0000-0000-0000-000000000000"}, 400, "VALIDATION_ERROR"),
        ({"conversation_id": "not-a-uuid"}, 400, "BAD_REQUEST"),
        ({"conversation_id": 7}, 400, "BAD_REQUEST"),
    ]:
        response = await client.post("/api/v1/claim", headers=headers(ACME_OP4), json=body)
        assert (response.status_code, error_code(response)) == (status, code), body
    trailing = await client.post(
        "/api/v1/claim", headers=headers(ACME_OP4),
        content=b'{"conversation_id": "' + conversation(1).encode() + b'"} trailing',
    )  # fmt: skip
    assert (trailing.status_code, error_code(trailing)) == (400, "BAD_REQUEST")


async def test_claim_accepts_every_uuid_form(client: httpx.AsyncClient) -> None:
    plain = conversation(1)
    for form in (plain.upper(), plain.replace("-", ""), "{" + plain + "}", "urn:uuid:" + plain):
        await client.post("/api/v1/deallocate", headers=headers(ACME_MANAGER),
                          json={"conversation_id": plain})  # fmt: skip
        response = await claim(client, ACME_OP4, form)
        assert response.status_code == 200, form
        assert response.json()["data"]["id"] == plain


async def test_twenty_five_concurrent_claims_one_winner(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    tenant, *operators = await _queue_with_operators(db, conversations=1, operators=25)
    target = await db.fetchval(
        "SELECT id::text FROM conversation_refs WHERE tenant_id = $1", uuid.UUID(tenant)
    )

    async def claim_as(operator: str) -> httpx.Response:
        return await client.post(
            "/api/v1/claim", headers=headers(operator, tenant), json={"conversation_id": target}
        )

    responses = await asyncio.gather(*(claim_as(op) for op in operators))
    winners = [r for r in responses if r.status_code == 200]
    assert len(winners) == 1
    losers = {error_code(r) for r in responses if r.status_code != 200}
    assert losers <= {"CONVERSATION_ALREADY_CLAIMED", "CONVERSATION_NOT_QUEUED"}
    assert all(r.status_code == 409 for r in responses if r.status_code != 200)
    owner = await db.fetchval(
        "SELECT assigned_operator_id::text FROM conversation_refs WHERE id = $1",
        uuid.UUID(target),
    )
    assert owner == winners[0].json()["data"]["assigned_operator_id"]
