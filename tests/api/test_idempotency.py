"""Idempotency-Key on every POST/PUT/DELETE under /api/v1 (docs/decisions.md#idempotency)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta

import asyncpg
import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse

from inbox_allocation.db.seed_ids import (
    ACME,
    ACME_MANAGER,
    ACME_OP4,
    ACME_OP5,
    INBOX_SALES,
    TECH_OP14,
    TECHSTART,
    conversation,
)
from inbox_allocation.services import idempotency
from inbox_allocation.services.idempotency import IdempotencyStore
from tests.support.http import headers


def with_key(operator: str, key: str, name: str = "Idempotency-Key") -> dict[str, str]:
    return headers(operator, **{name: key})


async def test_replay_is_byte_identical_and_marked(client: httpx.AsyncClient) -> None:
    first = await client.post("/api/v1/allocate", headers=with_key(ACME_OP4, "a-1"))
    second = await client.post("/api/v1/allocate", headers=with_key(ACME_OP4, "a-1"))
    assert first.status_code == second.status_code == 200
    assert second.content == first.content
    assert second.headers["idempotent-replayed"] == "true"
    assert second.headers["x-idempotency-replay"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert second.headers["x-request-id"]  # replays carry the request id too
    fresh = await client.post("/api/v1/allocate", headers=with_key(ACME_OP4, "a-2"))
    assert fresh.json()["data"]["id"] != first.json()["data"]["id"]


async def test_old_header_name_works_too(client: httpx.AsyncClient) -> None:
    first = await client.post(
        "/api/v1/allocate", headers=with_key(ACME_OP4, "x", "X-Idempotency-Key")
    )
    second = await client.post(
        "/api/v1/allocate", headers=with_key(ACME_OP4, "x", "X-Idempotency-Key")
    )
    assert second.content == first.content


async def test_four_xx_results_are_stored(client: httpx.AsyncClient, db: asyncpg.Pool) -> None:
    body = {"conversation_id": conversation(16)}  # inbox 2: 04 is not subscribed
    first = await client.post("/api/v1/claim", headers=with_key(ACME_OP4, "c"), json=body)
    assert first.status_code == 403
    await db.execute(
        "INSERT INTO operator_inbox_subscriptions (tenant_id, operator_id, inbox_id) "
        "SELECT tenant_id, id, '20000000-0000-0000-0000-000000000002' FROM operators "
        "WHERE id = $1",
        uuid.UUID(ACME_OP4),
    )
    again = await client.post("/api/v1/claim", headers=with_key(ACME_OP4, "c"), json=body)
    assert (again.status_code, again.content) == (403, first.content)  # replayed, not re-run


async def test_same_key_different_request_is_refused(client: httpx.AsyncClient) -> None:
    key = with_key(ACME_OP4, "k")
    await client.post("/api/v1/claim", headers=key, json={"conversation_id": conversation(1)})
    other_body = await client.post(
        "/api/v1/claim", headers=key, json={"conversation_id": conversation(2)}
    )
    assert (other_body.status_code, other_body.json()["error"]["code"]) == (
        422, "IDEMPOTENCY_KEY_REUSED")  # fmt: skip
    reordered = await client.post(  # same JSON, other spacing: same request
        "/api/v1/claim",
        headers=key,
        content=b'{ "conversation_id" :"' + conversation(1).encode() + b'" }',
    )
    assert reordered.status_code == 200


async def test_scope_is_operator_method_and_path(client: httpx.AsyncClient) -> None:
    mine = await client.post("/api/v1/allocate", headers=with_key(ACME_OP4, "shared"))
    theirs = await client.post("/api/v1/allocate", headers=with_key(ACME_OP5, "shared"))
    assert theirs.json()["data"]["id"] != mine.json()["data"]["id"]
    assert "idempotent-replayed" not in theirs.headers
    other_route = await client.post(
        "/api/v1/resolve", headers=with_key(ACME_OP4, "shared"),
        json={"conversation_id": mine.json()["data"]["id"]},
    )  # fmt: skip
    assert other_route.status_code == 200
    assert other_route.json()["data"]["state"] == "RESOLVED"


async def test_key_length_is_checked(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/allocate", headers=with_key(ACME_OP4, "k" * 256))
    assert (response.status_code, response.json()["error"]["code"]) == (400, "VALIDATION_ERROR")
    ok = await client.post("/api/v1/allocate", headers=with_key(ACME_OP4, "k" * 255))
    assert ok.status_code == 200


async def test_twenty_concurrent_duplicates_execute_once(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    before = await db.fetchval("SELECT count(*) FROM conversation_refs WHERE state = 'ALLOCATED'")
    responses = await asyncio.gather(
        *(client.post("/api/v1/allocate", headers=with_key(ACME_OP4, "burst")) for _ in range(20))
    )
    assert {r.status_code for r in responses} == {200}
    assert len({r.content for r in responses}) == 1  # 20 identical responses
    after = await db.fetchval("SELECT count(*) FROM conversation_refs WHERE state = 'ALLOCATED'")
    assert after == before + 1  # one execution
    replayed = sum(r.headers.get("idempotent-replayed") == "true" for r in responses)
    assert replayed == 19


async def test_every_mutating_route_is_covered(client: httpx.AsyncClient, db: asyncpg.Pool) -> None:
    body = {"status": "OFFLINE"}
    first = await client.put("/api/v1/operator/status", headers=with_key(ACME_OP4, "s"), json=body)
    again = await client.put("/api/v1/operator/status", headers=with_key(ACME_OP4, "s"), json=body)
    assert again.headers.get("idempotent-replayed") == "true"
    assert again.content == first.content
    stored = await db.fetchval(
        "SELECT count(*) FROM idempotency_keys WHERE method = 'PUT' AND endpoint = $1",
        "/api/v1/operator/status",
    )
    assert stored == 1


async def test_foreign_operator_stores_nothing(client: httpx.AsyncClient, db: asyncpg.Pool) -> None:
    foreign = headers(TECH_OP14, **{"Idempotency-Key": "f"})
    response = await client.post("/api/v1/allocate", headers=foreign)
    assert response.status_code == 401
    assert await db.fetchval("SELECT count(*) FROM idempotency_keys") == 0


@pytest_asyncio.fixture(loop_scope="session")
async def failing_route(app: FastAPI) -> AsyncIterator[list[int]]:
    """A temporary /api/v1 route that fails with 503 the first time, then succeeds."""
    calls: list[int] = []

    async def flaky(request: Request) -> JSONResponse:
        calls.append(1)
        status = 503 if len(calls) == 1 else 201
        return JSONResponse({"success": status < 300, "calls": len(calls)}, status_code=status)

    app.router.add_route("/api/v1/_flaky", flaky, methods=["POST"])
    try:
        yield calls
    finally:
        app.router.routes[:] = [
            r for r in app.router.routes if getattr(r, "path", "") != "/api/v1/_flaky"
        ]


async def test_five_xx_is_not_stored(client: httpx.AsyncClient, failing_route: list[int]) -> None:
    first = await client.post("/api/v1/_flaky", headers=with_key(ACME_OP4, "retry-me"))
    assert first.status_code == 503
    second = await client.post("/api/v1/_flaky", headers=with_key(ACME_OP4, "retry-me"))
    assert second.status_code == 201  # ran again
    third = await client.post("/api/v1/_flaky", headers=with_key(ACME_OP4, "retry-me"))
    assert (third.status_code, third.content) == (201, second.content)  # now replayed
    assert len(failing_route) == 2


async def test_expired_keys_run_again_and_are_cleaned_up(
    app: FastAPI, client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    first = await client.post("/api/v1/allocate", headers=with_key(ACME_OP4, "old"))
    await db.execute("UPDATE idempotency_keys SET expires_at = now() - interval '1 s'")
    second = await client.post("/api/v1/allocate", headers=with_key(ACME_OP4, "old"))
    assert second.json()["data"]["id"] != first.json()["data"]["id"]  # not a replay
    await db.execute("UPDATE idempotency_keys SET expires_at = now() - interval '1 s'")
    store = IdempotencyStore(app.state.db, timedelta(hours=24))
    assert await store.delete_expired() == 1
    assert await db.fetchval("SELECT count(*) FROM idempotency_keys") == 0


async def test_cleanup_goes_through_every_tenant(
    app: FastAPI, client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    """The cleanup runs one statement per tenant: expired keys of each are removed, a live
    key stays."""
    for operator, tenant, key in [
        (ACME_OP4, ACME, "acme-old"), (ACME_OP5, ACME, "acme-live"),
        (TECH_OP14, TECHSTART, "tech-old"),
    ]:  # fmt: skip
        response = await client.post(
            "/api/v1/allocate", headers={**headers(operator, tenant), "Idempotency-Key": key}
        )
        assert response.status_code < 500
    await db.execute(
        "UPDATE idempotency_keys SET expires_at = now() - interval '1 s' WHERE key LIKE '%-old'"
    )
    store = IdempotencyStore(app.state.db, timedelta(hours=24))
    assert await store.delete_expired() == 2
    assert [r["key"] for r in await db.fetch("SELECT key FROM idempotency_keys")] == ["acme-live"]


async def test_duplicate_waiting_too_long_gets_in_progress(
    client: httpx.AsyncClient, db: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(idempotency, "WAIT_FOR_FIRST_SECONDS", 0.3)
    await db.execute(
        "INSERT INTO idempotency_keys (key, tenant_id, operator_id, endpoint, method, "
        "request_hash, expires_at) SELECT 'busy', tenant_id, id, '/api/v1/allocate', 'POST', "
        "$2, now() + interval '1 h' FROM operators WHERE id = $1",
        uuid.UUID(ACME_OP4),
        idempotency.fingerprint("POST", "/api/v1/allocate", "", b""),
    )  # a reservation whose owner is still running
    response = await client.post("/api/v1/allocate", headers=with_key(ACME_OP4, "busy"))
    assert (response.status_code, response.json()["error"]["code"]) == (
        409, "IDEMPOTENCY_KEY_IN_PROGRESS")  # fmt: skip


async def test_delete_routes_are_covered(client: httpx.AsyncClient) -> None:
    # Any DELETE under /api/v1 goes through the same machinery (route answers are stored).
    call: Callable[[], Awaitable[httpx.Response]] = lambda: client.delete(  # noqa: E731
        f"/api/v1/inboxes/{INBOX_SALES}/operators/{ACME_OP5}", headers=with_key(ACME_MANAGER, "d")
    )
    first, second = await call(), await call()
    assert second.status_code == first.status_code
    assert second.headers.get("idempotent-replayed") == "true"
