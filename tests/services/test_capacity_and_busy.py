"""Operator capacity (max_concurrent_conversations) and the BUSY status."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import asyncpg
import httpx

from inbox_allocation.api.schemas.envelope import Envelope
from inbox_allocation.api.schemas.operator_status import OperatorStatusOut
from inbox_allocation.db.seed_ids import (
    ACME,
    ACME_ADMIN,
    ACME_MANAGER,
    ACME_OP4,
    ACME_OP5,
    INBOX_SALES,
    conversation,
)
from tests.support.http import headers
from tests.support.http import status_and_code as code


async def set_capacity(client: httpx.AsyncClient, operator: str, capacity: int | None) -> None:
    response = await client.put(
        f"/api/v1/operators/{operator}", headers=headers(ACME_ADMIN),
        json={"max_concurrent_conversations": capacity},
    )  # fmt: skip
    assert response.status_code == 200, response.text
    assert response.json()["data"]["max_concurrent_conversations"] == capacity


async def add_queued(db: asyncpg.Pool, count: int) -> None:
    await db.executemany(
        "INSERT INTO conversation_refs (tenant_id, inbox_id, external_conversation_id, "
        "customer_phone_number, message_count) VALUES ($1, $2, $3, '+15550002222', 1)",
        [(uuid.UUID(ACME), uuid.UUID(INBOX_SALES),
          f"cap-{n}") for n in range(count)],
    )  # fmt: skip


async def status_of(client: httpx.AsyncClient, operator: str) -> OperatorStatusOut:
    response = await client.get("/api/v1/operator/status", headers=headers(operator))
    return Envelope[OperatorStatusOut].model_validate(response.json()).data


# --- capacity -----------------------------------------------------------------------------


async def test_capacity_is_set_on_create_and_update(client: httpx.AsyncClient) -> None:
    created = await client.post(
        "/api/v1/operators", headers=headers(ACME_ADMIN),
        json={"role": "OPERATOR", "max_concurrent_conversations": 4},
    )  # fmt: skip
    assert created.status_code == 201
    assert created.json()["data"]["max_concurrent_conversations"] == 4
    operator = created.json()["data"]["id"]
    role_only = await client.put(
        f"/api/v1/operators/{operator}", headers=headers(ACME_ADMIN), json={"role": "MANAGER"}
    )
    assert role_only.json()["data"]["max_concurrent_conversations"] == 4  # untouched
    await set_capacity(client, operator, None)  # null = unlimited
    for bad in (0, -1, "3", 1.5):
        response = await client.put(
            f"/api/v1/operators/{operator}", headers=headers(ACME_ADMIN),
            json={"max_concurrent_conversations": bad},
        )  # fmt: skip
        assert response.status_code == 400, bad
    empty = await client.put(f"/api/v1/operators/{operator}", headers=headers(ACME_ADMIN), json={})
    assert code(empty) == (400, "VALIDATION_ERROR")


async def test_status_reports_load_and_capacity(client: httpx.AsyncClient) -> None:
    status = await status_of(client, ACME_OP4)  # holds 7…05 and 7…07
    assert (status.active_conversations, status.max_concurrent_conversations) == (2, None)
    await set_capacity(client, ACME_OP4, 3)
    assert (await status_of(client, ACME_OP4)).max_concurrent_conversations == 3


async def test_allocate_at_capacity_is_refused(client: httpx.AsyncClient) -> None:
    await set_capacity(client, ACME_OP4, 3)  # holds 2 already
    first = await client.post("/api/v1/allocate", headers=headers(ACME_OP4))
    assert first.status_code == 200
    second = await client.post("/api/v1/allocate", headers=headers(ACME_OP4))
    assert code(second) == (409, "CAPACITY_REACHED")
    resolved = await client.post("/api/v1/resolve", headers=headers(ACME_OP4),
                                 json={"conversation_id": conversation(5)})  # fmt: skip
    assert resolved.status_code == 200
    third = await client.post("/api/v1/allocate", headers=headers(ACME_OP4))
    assert third.status_code == 200  # room again


async def test_twenty_concurrent_allocations_with_capacity_three(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    await add_queued(db, 25)
    operator = ACME_OP5  # holds 7…06 only: free it so the cap applies from zero
    await client.post("/api/v1/deallocate", headers=headers(ACME_MANAGER),
                      json={"conversation_id": conversation(6)})  # fmt: skip
    await set_capacity(client, operator, 3)
    responses = await asyncio.gather(
        *(client.post("/api/v1/allocate", headers=headers(operator)) for _ in range(20))
    )
    assert Counter(r.status_code for r in responses) == {200: 3, 409: 17}
    assert {code(r) for r in responses if r.status_code == 409} == {(409, "CAPACITY_REACHED")}
    held = await db.fetchval(
        "SELECT count(*) FROM conversation_refs WHERE assigned_operator_id = $1 "
        "AND state = 'ALLOCATED'",
        uuid.UUID(operator),
    )
    assert held == 3


async def test_concurrent_claims_and_allocations_respect_capacity(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    await add_queued(db, 10)
    await set_capacity(client, ACME_OP4, 4)  # holds 2: room for 2 more
    targets = [conversation(n) for n in (1, 2, 3)]
    requests = [
        client.post("/api/v1/claim", headers=headers(ACME_OP4), json={"conversation_id": t})
        for t in targets
    ] + [client.post("/api/v1/allocate", headers=headers(ACME_OP4)) for _ in range(5)]
    responses = await asyncio.gather(*requests)
    # Two new conversations at most; a claim of one the operator just got through a
    # concurrent allocate also answers 200 ("already yours"), so count distinct ids.
    won = {r.json()["data"]["id"] for r in responses if r.status_code == 200}
    assert len(won) == 2
    assert {r.json()["error"]["code"] for r in responses if r.status_code != 200} <= {
        "CAPACITY_REACHED", "CONVERSATION_ALREADY_CLAIMED", "CONVERSATION_NOT_QUEUED"}  # fmt: skip
    held = await db.fetchval(
        "SELECT count(*) FROM conversation_refs WHERE assigned_operator_id = $1 "
        "AND state = 'ALLOCATED'",
        uuid.UUID(ACME_OP4),
    )
    assert held == 4


async def test_claim_at_capacity_but_own_conversation_is_fine(client: httpx.AsyncClient) -> None:
    await set_capacity(client, ACME_OP4, 2)  # holds 7…05 and 7…07
    refused = await client.post("/api/v1/claim", headers=headers(ACME_OP4),
                                json={"conversation_id": conversation(1)})  # fmt: skip
    assert code(refused) == (409, "CAPACITY_REACHED")
    own = await client.post("/api/v1/claim", headers=headers(ACME_OP4),
                            json={"conversation_id": conversation(5)})  # fmt: skip
    assert own.status_code == 200


async def test_manager_reassign_may_exceed_capacity(client: httpx.AsyncClient) -> None:
    await set_capacity(client, ACME_OP4, 2)  # full
    response = await client.post(
        "/api/v1/reassign", headers=headers(ACME_MANAGER),
        json={"conversation_id": conversation(6), "operator_id": ACME_OP4},
    )  # fmt: skip
    assert response.status_code == 200
    assert (await status_of(client, ACME_OP4)).active_conversations == 3


# --- BUSY ---------------------------------------------------------------------------------


async def put_status(client: httpx.AsyncClient, operator: str, status: str) -> httpx.Response:
    return await client.put(
        "/api/v1/operator/status", headers=headers(operator), json={"status": status}
    )


async def test_busy_keeps_conversations_and_receives_none(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    response = await put_status(client, ACME_OP4, "BUSY")
    assert response.json()["data"]["status"] == "BUSY"
    assert (await status_of(client, ACME_OP4)).active_conversations == 2
    assert (
        await db.fetchval(
            "SELECT count(*) FROM grace_period_assignments WHERE operator_id = $1",
            uuid.UUID(ACME_OP4),
        )
        == 0
    )  # no grace period for BUSY (the seed's row for 7…07 is cancelled too)
    allocate = await client.post("/api/v1/allocate", headers=headers(ACME_OP4))
    assert code(allocate) == (400, "OPERATOR_NOT_AVAILABLE")
    # The error says what to do about it.
    assert "PUT /api/v1/operator/status" in allocate.json()["error"]["message"]
    claim = await client.post("/api/v1/claim", headers=headers(ACME_OP4),
                              json={"conversation_id": conversation(1)})  # fmt: skip
    assert code(claim) == (400, "OPERATOR_NOT_AVAILABLE")
    resolve = await client.post("/api/v1/resolve", headers=headers(ACME_OP4),
                                json={"conversation_id": conversation(5)})  # fmt: skip
    assert resolve.status_code == 200  # lifecycle does not look at status


async def test_offline_then_busy_cancels_grace(client: httpx.AsyncClient, db: asyncpg.Pool) -> None:
    await put_status(client, ACME_OP4, "OFFLINE")
    grace = "SELECT count(*) FROM grace_period_assignments WHERE operator_id = $1"
    assert await db.fetchval(grace, uuid.UUID(ACME_OP4)) == 2
    await put_status(client, ACME_OP4, "BUSY")
    assert await db.fetchval(grace, uuid.UUID(ACME_OP4)) == 0


async def test_reassign_to_busy_operator_is_refused(client: httpx.AsyncClient) -> None:
    await put_status(client, ACME_OP5, "BUSY")
    response = await client.post(
        "/api/v1/reassign", headers=headers(ACME_MANAGER),
        json={"conversation_id": conversation(5), "operator_id": ACME_OP5},
    )  # fmt: skip
    assert code(response) == (409, "OPERATOR_NOT_AVAILABLE")
