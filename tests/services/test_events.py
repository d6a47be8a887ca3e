"""GET /api/v1/events: the JSON page, long poll, filters, visibility, SSE and retention.

Events are inserted straight into the outbox here (the statements that write them with their
changes are tested in tests/sql/test_event_writes.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
import pytest_asyncio
import uvicorn
from fastapi import FastAPI

from inbox_allocation.app import create_app
from inbox_allocation.config import Settings
from inbox_allocation.db.pool import Database
from inbox_allocation.db.seed_ids import ACME as TENANT
from inbox_allocation.db.seed_ids import ACME_ADMIN as ADMIN
from inbox_allocation.db.seed_ids import ACME_OP4 as OPERATOR_4
from inbox_allocation.db.seed_ids import ACME_OP5 as OPERATOR_5
from inbox_allocation.db.seed_ids import INBOX_BILLING as INBOX_3
from inbox_allocation.db.seed_ids import INBOX_SALES as INBOX_1
from inbox_allocation.db.seed_ids import INBOX_TECH_GENERAL, TECH_ADMIN
from inbox_allocation.db.seed_ids import TECHSTART as OTHER_TENANT
from inbox_allocation.processes import free_port
from inbox_allocation.services.event_retention import EventRetention

pytestmark = pytest.mark.asyncio(loop_scope="session")


def who(operator: str, tenant: str = TENANT) -> dict[str, str]:
    return {"X-Tenant-ID": tenant, "X-Operator-ID": operator}


INSERT = """
INSERT INTO events (tenant_id, type, inbox_id, operator_id, data)
VALUES ($1, $2, $3, $4, jsonb_build_object('n', $5::int))
"""


async def add(
    db: asyncpg.Pool, n: int, kind: str, inbox: str | None = None, operator: str | None = None,
    tenant: str = TENANT,
) -> None:  # fmt: skip
    await db.execute(INSERT, tenant, kind, inbox, operator, n)


async def start(client: httpx.AsyncClient, operator: str = ADMIN) -> str:
    response = await client.get("/api/v1/events", headers=who(operator))
    assert response.status_code == 200, response.text
    cursor: str = response.json()["data"]["next_after"]
    return cursor


async def numbers(
    client: httpx.AsyncClient, after: str, operator: str = ADMIN, **params: Any
) -> list[int]:
    response = await client.get(
        "/api/v1/events", params={"after": after, **params}, headers=who(operator)
    )
    assert response.status_code == 200, response.text
    return [event["data"]["n"] for event in response.json()["data"]["events"]]


async def test_page_shape_and_start_from_now(client: httpx.AsyncClient, db: asyncpg.Pool) -> None:
    await add(db, 1, "conversation.queued", INBOX_1)  # before the start: never seen
    after = await start(client)
    await add(db, 2, "conversation.queued", INBOX_1)
    response = await client.get("/api/v1/events", params={"after": after}, headers=who(ADMIN))
    body = response.json()
    assert body["success"] is True
    [event] = body["data"]["events"]
    assert set(event) == {"id", "type", "occurred_at", "tenant_id", "data"}
    assert event["type"] == "conversation.queued"
    assert event["tenant_id"] == TENANT
    assert event["occurred_at"].endswith("Z")
    assert event["data"] == {"n": 2}
    assert body["data"]["next_after"] >= event["id"] > after


@pytest.mark.parametrize(
    "params",
    [
        {"after": "nope"},
        {"after": "0" * 31},
        {"limit": "0"},
        {"limit": "501"},
        {"limit": "x"},
        {"wait": "31"},
        {"wait": "-1"},
        {"types": "conversation.bogus"},
        {"types": ","},
        {"inbox_id": "not-a-uuid"},
    ],
)
async def test_bad_parameters_are_400(client: httpx.AsyncClient, params: dict[str, str]) -> None:
    response = await client.get("/api/v1/events", params=params, headers=who(ADMIN))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "INVALID_QUERY"


async def test_limit_pages_through_in_order(client: httpx.AsyncClient, db: asyncpg.Pool) -> None:
    after = await start(client)
    for n in range(1, 8):
        await add(db, n, "operator.status_changed", operator=ADMIN)
    seen: list[int] = []
    while True:
        response = await client.get(
            "/api/v1/events", params={"after": after, "limit": 3}, headers=who(ADMIN)
        )
        data = response.json()["data"]
        assert len(data["events"]) <= 3
        if not data["events"]:
            break
        seen += [event["data"]["n"] for event in data["events"]]
        after = data["next_after"]
    assert seen == list(range(1, 8))


async def test_visibility_by_role_and_subscription(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    after = await start(client)
    # A cursor belongs to its tenant (on Citus its numbers are those of the tenant's node):
    # the other tenant starts from its own.
    other = who(TECH_ADMIN, OTHER_TENANT)
    other_start = await client.get("/api/v1/events", headers=other)
    other_after = other_start.json()["data"]["next_after"]
    await add(db, 1, "conversation.queued", INBOX_1)
    await add(db, 2, "conversation.queued", INBOX_3)  # operator 4 is not subscribed
    await add(db, 3, "conversation.allocated", INBOX_3, OPERATOR_4)  # about operator 4
    await add(db, 4, "operator.status_changed", operator=OPERATOR_4)
    await add(db, 5, "operator.status_changed", operator=OPERATOR_5)
    await add(db, 6, "conversation.queued", INBOX_TECH_GENERAL,
              tenant=OTHER_TENANT)  # fmt: skip
    assert await numbers(client, after) == [1, 2, 3, 4, 5]
    assert await numbers(client, after, OPERATOR_4) == [1, 3, 4]
    assert await numbers(client, after, OPERATOR_4, types="operator.status_changed") == [4]
    assert await numbers(client, after, ADMIN, inbox_id=INBOX_3) == [2, 3]
    # Subscriptions count when the event is read: after leaving inbox 1, its events are gone.
    await db.execute(
        "DELETE FROM operator_inbox_subscriptions WHERE operator_id = $1 AND inbox_id = $2",
        OPERATOR_4, INBOX_1,
    )  # fmt: skip
    assert await numbers(client, after, OPERATOR_4) == [3, 4]
    # Another tenant sees only its own.
    response = await client.get("/api/v1/events", params={"after": other_after}, headers=other)
    assert [e["data"]["n"] for e in response.json()["data"]["events"]] == [6]


async def test_long_poll_answers_when_an_event_arrives_and_respects_visibility(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    after = await start(client, OPERATOR_4)
    await db.execute(
        "DELETE FROM operator_inbox_subscriptions WHERE operator_id = $1 AND inbox_id = $2",
        OPERATOR_4, INBOX_1,
    )  # fmt: skip
    waiting = asyncio.create_task(
        client.get("/api/v1/events", params={"after": after, "wait": 20}, headers=who(OPERATOR_4))
    )
    await asyncio.sleep(0.5)  # the request is waiting on the hub
    assert not waiting.done()
    await add(db, 1, "conversation.queued", INBOX_1)  # an inbox it left: not for it
    await add(db, 2, "operator.status_changed", operator=OPERATOR_4)
    response = await waiting
    assert [event["data"]["n"] for event in response.json()["data"]["events"]] == [2]


async def test_wait_zero_answers_at_once_with_an_empty_page(client: httpx.AsyncClient) -> None:
    after = await start(client)
    response = await client.get("/api/v1/events", params={"after": after}, headers=who(ADMIN))
    assert response.json()["data"] == {"events": [], "next_after": after}


async def test_expired_cursor_is_410_with_the_oldest_available_cursor(
    client: httpx.AsyncClient, db: asyncpg.Pool, app: FastAPI
) -> None:
    after = await start(client)
    await add(db, 1, "operator.status_changed", operator=ADMIN)
    await add(db, 2, "operator.status_changed", operator=ADMIN)
    await db.execute(
        "UPDATE events SET occurred_at = now() - interval '4 days' WHERE data->>'n' = '1'"
    )
    await add(db, 3, "operator.status_changed", operator=ADMIN)
    retention = EventRetention(Database(app.state.db.pool), timedelta(hours=72))
    assert await retention.purge() == 1
    assert await retention.purge() == 0  # idempotent, as in a second replica
    response = await client.get("/api/v1/events", params={"after": after}, headers=who(ADMIN))
    assert response.status_code == 410
    error = response.json()["error"]
    assert error["code"] == "EVENT_CURSOR_EXPIRED"
    [detail] = error["details"]
    oldest = detail.removeprefix("oldest_available_cursor: ")
    assert await numbers(client, oldest) == [2, 3]
    # A cursor at or after the purge position is fine.
    later = await client.get("/api/v1/events", params={"after": oldest}, headers=who(ADMIN))
    assert later.status_code == 200
    assert datetime.now(UTC)  # the purge used the real clock


# ---- Server-Sent Events, over a real HTTP server --------------------------------------


@pytest_asyncio.fixture(loop_scope="session")
async def server(settings: Settings) -> AsyncIterator[str]:
    """The app served by uvicorn on a free port in this event loop."""
    port = free_port()
    # No logging set-up by uvicorn: it would change the process's logger levels for the
    # tests that follow.
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port,
                            log_config=None, log_level=None, access_log=False)  # fmt: skip
    served = uvicorn.Server(config)
    task = asyncio.create_task(served.serve())
    while not served.started:  # noqa: ASYNC110 (uvicorn exposes a flag, not an event)
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        served.should_exit = True
        with contextlib.suppress(Exception):
            await task


async def sse_frames(lines: AsyncIterator[str], count: int) -> list[dict[str, str]]:
    """The next `count` event frames (comments skipped), each as its fields."""
    frames: list[dict[str, str]] = []
    fields: dict[str, str] = {}
    async for line in lines:
        if line == "":
            if fields:
                frames.append(fields)
                fields = {}
                if len(frames) == count:
                    return frames
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(": ")
        fields[name] = value
    return frames


async def test_sse_streams_live_events_and_resumes_with_last_event_id(
    server: str, db: asyncpg.Pool
) -> None:
    headers = {**who(ADMIN), "Accept": "text/event-stream"}
    async with httpx.AsyncClient(base_url=server, timeout=30) as http:
        await add(db, 0, "operator.status_changed", operator=ADMIN)  # before: not streamed
        async with http.stream("GET", "/api/v1/events", headers=headers) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            lines = response.aiter_lines()
            assert await anext(lines) == ": connected"
            for n in (1, 2, 3):
                await add(db, n, "operator.status_changed", operator=ADMIN)
            frames = await sse_frames(lines, 3)
        events = [orjson.loads(frame["data"]) for frame in frames]
        assert [event["data"]["n"] for event in events] == [1, 2, 3]
        assert [frame["id"] for frame in frames] == [event["id"] for event in events]
        assert {frame["event"] for frame in frames} == {"operator.status_changed"}
        # Reconnecting with the first id gets the two after it, then the live ones.
        resume = {**headers, "Last-Event-ID": frames[0]["id"]}
        async with http.stream("GET", "/api/v1/events", headers=resume) as response:
            await add(db, 4, "operator.status_changed", operator=ADMIN)
            again = await sse_frames(response.aiter_lines(), 3)
        assert [orjson.loads(f["data"])["data"]["n"] for f in again] == [2, 3, 4]
        # An expired or malformed Last-Event-ID is refused before the stream starts.
        bad = await http.get("/api/v1/events", headers={**headers, "Last-Event-ID": "x"})
        assert bad.status_code == 400


async def test_many_waiting_readers_share_one_listener_connection(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    after = await start(client)
    count = 50
    waiting = [
        asyncio.create_task(client.get(
            "/api/v1/events", params={"after": after, "wait": 20}, headers=who(ADMIN)
        ))
        for _ in range(count)
    ]  # fmt: skip
    await asyncio.sleep(0.6)  # every request is registered with the hub
    listeners = await db.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'inbox-allocation-events'"
    )
    assert listeners == 1  # this app's hub: one connection, not one per reader
    await add(db, 1, "operator.status_changed", operator=ADMIN)
    responses = await asyncio.gather(*waiting)
    assert all([e["data"]["n"] for e in r.json()["data"]["events"]] == [1] for r in responses)


async def test_long_poll_with_a_type_filter_skips_other_batches(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    after = await start(client)
    params = {"after": after, "wait": "20", "types": "operator.status_changed"}
    waiting = asyncio.create_task(client.get("/api/v1/events", params=params, headers=who(ADMIN)))
    await asyncio.sleep(0.5)
    await add(db, 1, "conversation.queued", INBOX_1)  # a batch of other types: skipped
    await asyncio.sleep(0.5)
    assert not waiting.done()
    await add(db, 2, "operator.status_changed", operator=ADMIN)
    response = await waiting
    assert [event["data"]["n"] for event in response.json()["data"]["events"]] == [2]
