"""GET/PUT /operator/status and the grace rows a status change creates or removes."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import asyncpg
import httpx

from inbox_allocation.api.schemas.envelope import Envelope
from inbox_allocation.api.schemas.operator_status import OperatorStatusOut
from inbox_allocation.db.seed_ids import ACME_OP4, ACME_OP6_OFFLINE, TECH_OP14
from tests.support.http import headers


async def put_status(client: httpx.AsyncClient, operator: str, status: object) -> httpx.Response:
    return await client.put(
        "/api/v1/operator/status", headers=headers(operator), json={"status": status}
    )


async def grace_of(db: asyncpg.Pool, operator: str) -> list[asyncpg.Record]:
    return await db.fetch(
        "SELECT conversation_id::text, expires_at - created_at AS duration, reason::text "
        "FROM grace_period_assignments WHERE operator_id = $1 ORDER BY conversation_id",
        uuid.UUID(operator),
    )


async def test_get_status(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/operator/status", headers=headers(ACME_OP4))
    assert response.status_code == 200
    body = Envelope[OperatorStatusOut].model_validate(response.json())
    assert (str(body.data.operator_id), body.data.status) == (ACME_OP4, "AVAILABLE")


async def test_going_offline_starts_grace_for_every_allocated_conversation(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    response = await put_status(client, ACME_OP4, "OFFLINE")
    assert response.status_code == 200
    assert response.json()["data"]["status"] == "OFFLINE"
    rows = await grace_of(db, ACME_OP4)
    # 7…05 and 7…07 are allocated to 04; 7…07's seed row is replaced, not duplicated.
    assert [r["conversation_id"][-2:] for r in rows] == ["05", "07"]
    assert all(r["duration"] == timedelta(minutes=5) for r in rows)  # GRACE_PERIOD_DURATION
    assert all(r["reason"] == "OFFLINE" for r in rows)

    back = await put_status(client, ACME_OP4, "AVAILABLE")
    assert back.status_code == 200
    assert await grace_of(db, ACME_OP4) == []
    still_mine = await db.fetchval(
        "SELECT count(*) FROM conversation_refs WHERE assigned_operator_id = $1 "
        "AND state = 'ALLOCATED'",
        uuid.UUID(ACME_OP4),
    )
    assert still_mine == 2


async def test_same_status_changes_nothing(client: httpx.AsyncClient) -> None:
    before = (await client.get("/api/v1/operator/status", headers=headers(ACME_OP6_OFFLINE))).json()
    after = await put_status(client, ACME_OP6_OFFLINE, "OFFLINE")
    assert after.json()["data"] == before["data"]


async def test_status_validation(client: httpx.AsyncClient) -> None:
    for value, status, error in [
        ("BREAK", 400, "VALIDATION_ERROR"),
        ("available", 400, "VALIDATION_ERROR"),
        (5, 400, "BAD_REQUEST"),
    ]:
        response = await put_status(client, ACME_OP4, value)
        assert (response.status_code, response.json()["error"]["code"]) == (status, error)
    no_body = await client.put("/api/v1/operator/status", headers=headers(ACME_OP4))
    assert no_body.json()["error"]["code"] == "BAD_REQUEST"


async def test_operator_of_another_tenant_is_unauthorised(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    response = await put_status(client, TECH_OP14, "OFFLINE")  # TechStart operator, Acme header
    assert (response.status_code, response.json()["error"]["code"]) == (401, "UNAUTHORIZED")
    status = await db.fetchval(
        "SELECT status::text FROM operator_status WHERE operator_id = $1", uuid.UUID(TECH_OP14)
    )
    assert status == "AVAILABLE"  # nothing written


async def test_missing_status_row_is_created(client: httpx.AsyncClient, db: asyncpg.Pool) -> None:
    await db.execute("DELETE FROM operator_status WHERE operator_id = $1", uuid.UUID(ACME_OP4))
    missing = await client.get("/api/v1/operator/status", headers=headers(ACME_OP4))
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "NOT_FOUND")
    created = await put_status(client, ACME_OP4, "OFFLINE")
    assert created.status_code == 200
    rows = await grace_of(db, ACME_OP4)
    # Created with the requested status but no grace logic: only the seed's row for 7…07.
    assert [r["conversation_id"][-2:] for r in rows] == ["07"]


async def test_concurrent_flips_leave_consistent_grace_rows(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    flips = ["OFFLINE", "AVAILABLE"] * 10
    await asyncio.gather(*(put_status(client, ACME_OP4, s) for s in flips))
    status = await db.fetchval(
        "SELECT status::text FROM operator_status WHERE operator_id = $1", uuid.UUID(ACME_OP4)
    )
    rows = await grace_of(db, ACME_OP4)
    if status == "OFFLINE":
        assert len(rows) == 2
    else:
        assert rows == []
