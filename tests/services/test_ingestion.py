"""POST /api/v1/conversations: the gateway's inbound messages, one atomic upsert each."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx

from inbox_allocation.api.schemas.conversations import Conversation
from inbox_allocation.api.schemas.envelope import Envelope
from inbox_allocation.db.seed_ids import (
    ACME_MANAGER,
    ACME_OP4,
    INBOX_SALES,
    INBOX_SUPPORT,
    INBOX_TECH_GENERAL,
    conversation,
)
from tests.support.http import headers
from tests.support.http import status_and_code as code


def message(external_id: str = "wa-1", **overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "inbox_id": INBOX_SALES,
        "external_conversation_id": external_id,
        "customer_phone_number": "+14155550100",
    }
    body.update(overrides)
    return body


async def ingest(
    client: httpx.AsyncClient,
    body: dict[str, object],
    operator: str = ACME_MANAGER,
    **extra: str,
) -> httpx.Response:
    return await client.post(
        "/api/v1/conversations", headers=headers(operator, **extra), json=body
    )  # fmt: skip


async def test_new_conversation_is_queued(client: httpx.AsyncClient, db: asyncpg.Pool) -> None:
    at = datetime.now(UTC) - timedelta(minutes=3)
    response = await ingest(client, message(message_at=at.isoformat()))
    assert response.status_code == 201
    data = Envelope[Conversation].model_validate(response.json()).data
    assert (data.state, data.message_count, data.assigned_operator_id) == ("QUEUED", 1, None)
    assert data.last_message_at == at
    assert data.labels == []
    assert data.priority_score > 0  # live: 1 message, waiting 3 minutes
    row = await db.fetchrow("SELECT state::text FROM conversation_refs WHERE id = $1", data.id)
    assert row is not None
    assert row["state"] == "QUEUED"


async def test_existing_conversation_counts_and_keeps_latest_time(
    client: httpx.AsyncClient,
) -> None:
    now = datetime.now(UTC)
    first = await ingest(client, message(message_at=(now - timedelta(minutes=1)).isoformat()))
    older = await ingest(
        client,
        message(message_at=(now - timedelta(minutes=9)).isoformat(),
                inbox_id=INBOX_SUPPORT, customer_phone_number="+14155550199"),
    )  # fmt: skip
    assert (first.status_code, older.status_code) == (201, 200)
    data = older.json()["data"]
    assert data["id"] == first.json()["data"]["id"]
    assert data["message_count"] == 2
    assert data["last_message_at"] == first.json()["data"]["last_message_at"]  # max(old, new)
    assert data["inbox_id"] == INBOX_SALES  # not moved by a message
    assert data["customer_phone_number"] == "+14155550100"


async def test_resolved_conversation_reopens(client: httpx.AsyncClient) -> None:
    # Seed 7…08: RESOLVED, external id ext-008, operator 04.
    response = await ingest(client, message("ext-008"))
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["id"] == conversation(8)
    assert (data["state"], data["assigned_operator_id"], data["resolved_at"]) == (
        "QUEUED", None, None)  # fmt: skip
    assert data["message_count"] == 13
    assert [label["name"] for label in data["labels"]] == ["Enterprise"]  # labels stay


async def test_allocated_conversation_stays_with_its_operator(
    client: httpx.AsyncClient,
) -> None:
    response = await ingest(client, message("ext-005"))  # 7…05: ALLOCATED to 04
    data = response.json()["data"]
    assert (data["state"], data["assigned_operator_id"]) == ("ALLOCATED", ACME_OP4)


async def test_thirty_concurrent_events_make_one_conversation(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    responses = await asyncio.gather(*(ingest(client, message("burst")) for _ in range(30)))
    assert Counter(r.status_code for r in responses) == {201: 1, 200: 29}
    assert len({r.json()["data"]["id"] for r in responses}) == 1
    rows = await db.fetch(
        "SELECT message_count FROM conversation_refs WHERE external_conversation_id = 'burst'"
    )
    assert [r["message_count"] for r in rows] == [30]


async def test_validation(client: httpx.AsyncClient) -> None:
    future = (datetime.now(UTC) + timedelta(minutes=6)).isoformat()
    for body in (
        message(customer_phone_number="4155550100"),
        message(customer_phone_number="+0155550100"),
        message(external_conversation_id=""),
        message(external_conversation_id="x" * 256),
        message(message_at=future),
        message(message_at="2026-01-27T10:00:00"),  # no offset
        message(message_at="yesterday"),
        {k: v for k, v in message().items() if k != "inbox_id"},
    ):
        assert code(await ingest(client, body)) == (400, "VALIDATION_ERROR"), body
    assert code(await ingest(client, message(inbox_id="nope"))) == (400, "BAD_REQUEST")
    assert code(await ingest(client, message(message_count=5, external_conversation_id=7))) == (
        400, "BAD_REQUEST")  # fmt: skip
    near_future = (datetime.now(UTC) + timedelta(minutes=4)).isoformat()
    assert (await ingest(client, message(message_at=near_future))).status_code == 201


async def test_inbox_must_be_the_tenants(client: httpx.AsyncClient, db: asyncpg.Pool) -> None:
    for inbox in (INBOX_TECH_GENERAL, str(uuid.uuid4())):
        assert code(await ingest(client, message(inbox_id=inbox))) == (404, "INBOX_NOT_FOUND")
    count = await db.fetchval(
        "SELECT count(*) FROM conversation_refs WHERE external_conversation_id = 'wa-1'"
    )
    assert count == 0


async def test_operators_cannot_ingest(client: httpx.AsyncClient) -> None:
    assert code(await ingest(client, message(), operator=ACME_OP4)) == (403, "FORBIDDEN")


async def test_idempotency_key_is_honoured(client: httpx.AsyncClient, db: asyncpg.Pool) -> None:
    first = await ingest(client, message(), **{"Idempotency-Key": "msg-1"})
    again = await ingest(client, message(), **{"Idempotency-Key": "msg-1"})
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.headers["idempotent-replayed"] == "true"
    count = await db.fetchval(
        "SELECT message_count FROM conversation_refs WHERE external_conversation_id = 'wa-1'"
    )
    assert count == 1  # the retry did not count the message twice


async def test_trailing_slash(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/conversations/", headers=headers(ACME_MANAGER), json=message()
    )
    assert response.status_code == 201


async def test_timestamps_before_year_1000_keep_four_digit_years(client: httpx.AsyncClient) -> None:
    """RFC 3339 needs a four-digit year; strftime('%Y') wrote year 45 as "45"."""
    response = await client.post(
        "/api/v1/conversations",
        headers=headers(ACME_MANAGER),
        json={"inbox_id": INBOX_SALES, "external_conversation_id": "old-one",
              "customer_phone_number": "+14155550100", "message_at": "0045-01-29T13:31:36.74Z"},
    )  # fmt: skip
    assert response.status_code == 201, response.text
    assert response.json()["data"]["last_message_at"] == "0045-01-29T13:31:36.74Z"
