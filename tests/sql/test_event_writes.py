"""Every state change writes exactly its event, in its transaction; refused or rolled-back
changes write none. Changes go through the HTTP API (the grace sweeper is run directly);
events are read back through GET /api/v1/events as an ADMIN.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from inbox_allocation.db.pool import Database
from inbox_allocation.db.seed_ids import ACME as TENANT
from inbox_allocation.db.seed_ids import ACME_ADMIN as ADMIN
from inbox_allocation.db.seed_ids import ACME_OP4 as OP4
from inbox_allocation.db.seed_ids import ACME_OP5 as OP5
from inbox_allocation.db.seed_ids import INBOX_SALES, INBOX_SUPPORT
from inbox_allocation.services.grace import GraceSweeper

pytestmark = pytest.mark.asyncio(loop_scope="session")


_external = itertools.count(1)


def who(operator: str) -> dict[str, str]:
    return {"X-Tenant-ID": TENANT, "X-Operator-ID": operator}


class Recorder:
    """Reads the events written since the last call."""

    def __init__(self, client: httpx.AsyncClient, after: str) -> None:
        self.client = client
        self.after = after

    async def new(self) -> list[dict[str, Any]]:
        response = await self.client.get(
            "/api/v1/events", params={"after": self.after, "limit": 500}, headers=who(ADMIN)
        )
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        self.after = data["next_after"]
        events: list[dict[str, Any]] = data["events"]
        return events


@pytest_asyncio.fixture(loop_scope="session")
async def events(client: httpx.AsyncClient) -> AsyncIterator[Recorder]:
    response = await client.get("/api/v1/events", headers=who(ADMIN))
    yield Recorder(client, response.json()["data"]["next_after"])


def summary(events: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """(type, reason or via or status) per event."""
    return [
        (
            event["type"],
            event["data"].get("reason") or event["data"].get("via") or event["data"].get("status"),
        )
        for event in events
    ]


def base(conversation: dict[str, Any]) -> dict[str, Any]:
    """A conversation response without the fields that are not part of the event's copy."""
    return {k: v for k, v in conversation.items() if k not in ("labels", "allocated_at")}


async def ingest(client: httpx.AsyncClient, external: str | None = None,
                 inbox: str = INBOX_SALES) -> dict[str, Any]:  # fmt: skip
    response = await client.post(
        "/api/v1/conversations",
        json={"inbox_id": inbox, "customer_phone_number": "+14155550123",
              "external_conversation_id": external or f"rt-{next(_external)}"},
        headers=who(ADMIN),
    )  # fmt: skip
    assert response.status_code in (200, 201), response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def post(client: httpx.AsyncClient, path: str, operator: str, body: dict[str, Any]
               ) -> httpx.Response:  # fmt: skip
    return await client.post(f"/api/v1{path}", json=body, headers=who(operator))


async def test_ingest_new_message_and_reopen(client: httpx.AsyncClient, events: Recorder) -> None:
    created = await ingest(client, "rt-ingest")
    [queued] = await events.new()
    assert summary([queued]) == [("conversation.queued", "ingested")]
    assert queued["data"]["conversation"] == base(created)
    assert queued["tenant_id"] == TENANT
    again = await ingest(client, "rt-ingest")
    [message] = await events.new()
    assert message["type"] == "conversation.message"
    assert message["data"] == {"conversation": base(again)}
    assert message["data"]["conversation"]["message_count"] == 2
    # Claim, resolve, then a new message reopens it.
    assert (
        await post(client, "/claim", OP4, {"conversation_id": created["id"]})
    ).status_code == 200
    assert (
        await post(client, "/resolve", OP4, {"conversation_id": created["id"]})
    ).status_code == 200
    reopened = await ingest(client, "rt-ingest")
    assert summary(await events.new()) == [
        ("conversation.allocated", "claim"),
        ("conversation.resolved", None),
        ("conversation.queued", "reopened"),
    ]
    assert reopened["state"] == "QUEUED"


async def test_allocate_writes_one_allocated_event(
    client: httpx.AsyncClient, events: Recorder
) -> None:
    response = await post(client, "/allocate", OP4, {})
    assert response.status_code == 200, response.text
    allocated = response.json()["data"]
    [event] = await events.new()
    assert event["type"] == "conversation.allocated"
    assert event["data"]["via"] == "allocate"
    assert event["data"]["operator_id"] == OP4
    assert event["data"]["conversation"] == base(allocated)


async def test_reassign_deallocate_resolve(client: httpx.AsyncClient, events: Recorder) -> None:
    conversation = await ingest(client)
    cid = {"conversation_id": conversation["id"]}
    await post(client, "/claim", OP4, cid)
    assert (await post(client, "/reassign", ADMIN, {**cid, "operator_id": OP5})).status_code == 200
    assert (await post(client, "/deallocate", ADMIN, cid)).status_code == 200
    got = await events.new()
    assert summary(got) == [
        ("conversation.queued", "ingested"),
        ("conversation.allocated", "claim"),
        ("conversation.allocated", "reassign"),
        ("conversation.queued", "deallocated"),
    ]
    assert got[2]["data"]["operator_id"] == OP5
    assert got[3]["data"]["conversation"]["assigned_operator_id"] is None
    # Refused changes write nothing: resolving a queued one, deallocating it again (no-op).
    assert (await post(client, "/resolve", ADMIN, cid)).status_code == 409
    assert (await post(client, "/deallocate", ADMIN, cid)).status_code == 200
    assert await events.new() == []


async def test_move_writes_moved_and_requeue(client: httpx.AsyncClient, events: Recorder) -> None:
    queued = await ingest(client)
    allocated = await ingest(client)
    await post(client, "/claim", OP4, {"conversation_id": allocated["id"]})
    await events.new()
    move = {"inbox_id": INBOX_SUPPORT}
    await post(client, "/move_inbox", ADMIN, {"conversation_id": queued["id"], **move})
    # OP4 is not subscribed to Support: the allocated one goes back to the queue.
    await post(client, "/move_inbox", ADMIN, {"conversation_id": allocated["id"], **move})
    got = await events.new()
    assert summary(got) == [
        ("conversation.moved", None),
        ("conversation.moved", None),
        ("conversation.queued", "moved"),
    ]
    assert got[0]["data"]["from_inbox_id"] == INBOX_SALES
    assert got[0]["data"]["to_inbox_id"] == INBOX_SUPPORT
    assert got[2]["data"]["conversation"]["state"] == "QUEUED"
    # OP4 still sees the move of the conversation it held (its own inbox was left).
    op4 = await client.get(
        "/api/v1/events", params={"after": got[0]["id"][:16] + "0" * 16}, headers=who(OP4)
    )
    assert "conversation.moved" in [e["type"] for e in op4.json()["data"]["events"]]


async def test_status_change_and_grace_expiry(
    client: httpx.AsyncClient, events: Recorder, db: asyncpg.Pool, app: FastAPI
) -> None:
    conversation = await ingest(client)
    await post(client, "/claim", OP4, {"conversation_id": conversation["id"]})
    await events.new()
    offline = await client.put("/api/v1/operator/status", json={"status": "OFFLINE"},
                               headers=who(OP4))  # fmt: skip
    assert offline.status_code == 200
    same = await client.put("/api/v1/operator/status", json={"status": "OFFLINE"},
                            headers=who(OP4))  # fmt: skip
    assert same.status_code == 200
    [changed] = await events.new()  # the repeated status is no change
    assert changed["type"] == "operator.status_changed"
    assert changed["data"] == {"operator_id": OP4, "status": "OFFLINE"}
    await db.execute("UPDATE grace_period_assignments SET expires_at = now() - interval '1 s'")
    await GraceSweeper(Database(app.state.db.pool), 100).sweep()
    released = [
        e for e in await events.new() if e["data"]["conversation"]["id"] == conversation["id"]
    ]
    assert summary(released) == [("conversation.queued", "grace_expired")]


async def test_unsubscribe_and_operator_delete_requeue(
    client: httpx.AsyncClient, events: Recorder
) -> None:
    first, second = await ingest(client), await ingest(client)
    await post(client, "/claim", OP4, {"conversation_id": first["id"]})
    await post(client, "/claim", OP5, {"conversation_id": second["id"]})
    await events.new()
    left = await client.delete(f"/api/v1/inboxes/{INBOX_SALES}/operators/{OP4}", headers=who(ADMIN))
    assert left.status_code == 204
    got = await events.new()  # also the seed conversations OP4 held in Sales
    assert {(e["type"], e["data"]["reason"]) for e in got} == {
        ("conversation.queued", "unsubscribed")
    }
    assert first["id"] in [e["data"]["conversation"]["id"] for e in got]
    deleted = await client.delete(f"/api/v1/operators/{OP5}", headers=who(ADMIN))
    assert deleted.status_code in (200, 204)
    got = [e for e in await events.new() if e["data"]["conversation"]["id"] == second["id"]]
    assert summary(got) == [("conversation.queued", "operator_deleted")]


async def test_a_rolled_back_change_writes_no_event(
    client: httpx.AsyncClient, events: Recorder, db: asyncpg.Pool
) -> None:
    conversation = await ingest(client)
    cid = {"conversation_id": conversation["id"]}
    await post(client, "/claim", OP4, cid)
    await events.new()
    # The statement after the event-writing one fails (its table is gone for a moment: a
    # fault that works alike on both engines; Citus refuses statement-level triggers on
    # distributed tables): the whole transaction rolls back.
    await db.execute("ALTER TABLE grace_period_assignments RENAME TO test_hidden_grace")
    try:
        resolve = await post(client, "/resolve", OP4, cid)
        offline = await client.put("/api/v1/operator/status", json={"status": "OFFLINE"},
                                   headers=who(OP4))  # fmt: skip
    finally:
        await db.execute("ALTER TABLE test_hidden_grace RENAME TO grace_period_assignments")
    assert resolve.status_code == 500
    assert offline.status_code == 500
    assert await events.new() == []
    state = await db.fetchval("SELECT state::text FROM conversation_refs WHERE id = $1",
                              conversation["id"])  # fmt: skip
    assert state == "ALLOCATED"
