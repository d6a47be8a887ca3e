"""resolve, deallocate, reassign, move_inbox: checks, effects, and races."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import asyncpg
import httpx
import pytest

from inbox_allocation.api.schemas.conversations import Lifecycle
from inbox_allocation.api.schemas.envelope import Envelope
from inbox_allocation.db.seed_ids import (
    ACME_ADMIN,
    ACME_MANAGER,
    ACME_OP4,
    ACME_OP5,
    ACME_OP6_OFFLINE,
    ACME_OP7,
    INBOX_BILLING,
    INBOX_SALES,
    INBOX_SUPPORT,
    INBOX_TECH_GENERAL,
    TECH_OP14,
    conversation,
    inbox,
)
from tests.support.http import headers
from tests.support.http import status_and_code as code


async def post(client: httpx.AsyncClient, route: str, operator: str, **body: str) -> httpx.Response:
    return await client.post(f"/api/v1/{route}", headers=headers(operator), json=body)


async def conversation_row(db: asyncpg.Pool, number: int) -> asyncpg.Record:
    row = await db.fetchrow(
        "SELECT state::text, assigned_operator_id::text, inbox_id::text, resolved_at "
        "FROM conversation_refs WHERE id = $1",
        uuid.UUID(conversation(number)),
    )
    assert row is not None
    return row


async def grace_rows(db: asyncpg.Pool, number: int) -> int:
    count: int = await db.fetchval(
        "SELECT count(*) FROM grace_period_assignments WHERE conversation_id = $1",
        uuid.UUID(conversation(number)),
    )
    return count


# --- resolve ------------------------------------------------------------------------------


async def test_assignee_resolves_and_grace_row_goes(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    assert await grace_rows(db, 7) == 1
    response = await post(client, "resolve", ACME_OP4, conversation_id=conversation(7))
    assert response.status_code == 200
    body = Envelope[Lifecycle].model_validate(response.json())
    assert body.data.state == "RESOLVED"
    assert str(body.data.assigned_operator_id) == ACME_OP4  # kept on resolve
    assert body.data.resolved_at is not None
    row = await conversation_row(db, 7)
    assert row["state"] == "RESOLVED"
    assert await grace_rows(db, 7) == 0


async def test_resolve_rules(client: httpx.AsyncClient) -> None:
    assert code(await post(client, "resolve", ACME_OP5, conversation_id=conversation(5))) == (
        403, "INSUFFICIENT_PERMISSIONS")  # fmt: skip
    assert code(await post(client, "resolve", ACME_OP4, conversation_id=conversation(1))) == (
        409, "CONVERSATION_NOT_ALLOCATED")  # fmt: skip
    assert code(await post(client, "resolve", ACME_OP4, conversation_id=conversation(39))) == (
        404, "CONVERSATION_NOT_FOUND")  # fmt: skip
    # Already resolved: same permission checks (docs/decisions.md#lifecycle-transitions), then 200
    # unchanged.
    assert code(await post(client, "resolve", ACME_OP5, conversation_id=conversation(8))) == (
        403, "INSUFFICIENT_PERMISSIONS")  # fmt: skip
    owner = await post(client, "resolve", ACME_OP4, conversation_id=conversation(8))
    manager = await post(client, "resolve", ACME_MANAGER, conversation_id=conversation(8))
    assert owner.status_code == manager.status_code == 200
    assert owner.json()["data"]["updated_at"] == manager.json()["data"]["updated_at"]
    assert (
        await post(client, "resolve", ACME_MANAGER, conversation_id=conversation(6))
    ).status_code == 200


async def test_concurrent_resolves_one_change(client: httpx.AsyncClient) -> None:
    responses = await asyncio.gather(
        *(post(client, "resolve", ACME_OP4, conversation_id=conversation(5)) for _ in range(10))
    )
    assert {r.status_code for r in responses} == {200}
    assert len({r.json()["data"]["resolved_at"] for r in responses}) == 1


# --- deallocate ---------------------------------------------------------------------------


async def test_manager_deallocates(client: httpx.AsyncClient, db: asyncpg.Pool) -> None:
    response = await post(client, "deallocate", ACME_MANAGER, conversation_id=conversation(7))
    assert response.status_code == 200
    assert response.json()["data"]["state"] == "QUEUED"
    assert response.json()["data"]["assigned_operator_id"] is None
    assert await grace_rows(db, 7) == 0
    unchanged = await post(client, "deallocate", ACME_MANAGER, conversation_id=conversation(7))
    assert unchanged.status_code == 200


async def test_deallocate_rules(client: httpx.AsyncClient) -> None:
    assert code(await post(client, "deallocate", ACME_OP4, conversation_id=conversation(5))) == (
        403, "INSUFFICIENT_PERMISSIONS")  # fmt: skip
    assert code(await post(client, "deallocate", ACME_OP4, conversation_id=str(uuid.uuid4()))) == (
        403,
        "INSUFFICIENT_PERMISSIONS",
    )  # fmt: skip  (role checked before any lookup)
    assert code(await post(client, "deallocate", ACME_ADMIN, conversation_id=conversation(8))) == (
        409, "CONVERSATION_ALREADY_RESOLVED")  # fmt: skip
    assert code(await post(client, "deallocate", ACME_ADMIN, conversation_id=conversation(43))) == (
        404, "CONVERSATION_NOT_FOUND")  # fmt: skip


async def test_deallocate_racing_resolve(client: httpx.AsyncClient, db: asyncpg.Pool) -> None:
    """The loser gets the answer of the state it finds; the row is never half-changed."""
    resolve, deallocate = await asyncio.gather(
        post(client, "resolve", ACME_OP4, conversation_id=conversation(5)),
        post(client, "deallocate", ACME_MANAGER, conversation_id=conversation(5)),
    )
    row = await conversation_row(db, 5)
    if row["state"] == "RESOLVED":  # resolve won
        assert resolve.status_code == 200
        assert code(deallocate) == (409, "CONVERSATION_ALREADY_RESOLVED")
    else:  # deallocate won; resolving a queued conversation is refused
        assert (row["state"], row["assigned_operator_id"]) == ("QUEUED", None)
        assert deallocate.status_code == 200
        assert code(resolve) == (409, "CONVERSATION_NOT_ALLOCATED")


# --- reassign -----------------------------------------------------------------------------


async def test_manager_reassigns_to_available_subscribed_operator(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    response = await post(
        client, "reassign", ACME_MANAGER, conversation_id=conversation(7), operator_id=ACME_OP5
    )
    assert response.status_code == 200
    assert response.json()["data"]["assigned_operator_id"] == ACME_OP5
    assert (await conversation_row(db, 7))["assigned_operator_id"] == ACME_OP5
    assert await grace_rows(db, 7) == 0
    alias = await post(client, "reassign", ACME_MANAGER, conversation_id=conversation(7),
                       target_operator_id=ACME_OP4)  # fmt: skip
    assert alias.json()["data"]["assigned_operator_id"] == ACME_OP4


async def test_reassign_rules(client: httpx.AsyncClient) -> None:
    c5 = conversation(5)
    cases = [
        (ACME_OP4, c5, ACME_OP5, 403, "INSUFFICIENT_PERMISSIONS"),
        (ACME_MANAGER, conversation(1), ACME_OP5, 409, "CONVERSATION_NOT_ALLOCATED"),
        (ACME_MANAGER, c5, str(uuid.uuid4()), 404, "OPERATOR_NOT_FOUND"),
        (ACME_MANAGER, c5, TECH_OP14, 404, "OPERATOR_NOT_FOUND"),
        (ACME_MANAGER, c5, ACME_OP7, 400, "OPERATOR_NOT_SUBSCRIBED"),
        (ACME_MANAGER, c5, ACME_OP6_OFFLINE, 409, "OPERATOR_NOT_AVAILABLE"),
        (ACME_MANAGER, conversation(39), ACME_OP5, 404, "CONVERSATION_NOT_FOUND"),
    ]
    for caller, target, new_operator, status, error in cases:
        response = await post(client, "reassign", caller, conversation_id=target,
                              operator_id=new_operator)  # fmt: skip
        assert code(response) == (status, error), (target, new_operator)
    same = await post(client, "reassign", ACME_MANAGER, conversation_id=c5, operator_id=ACME_OP4)
    assert same.status_code == 200
    both_missing = await client.post("/api/v1/reassign", headers=headers(ACME_MANAGER), json={})
    assert code(both_missing) == (400, "VALIDATION_ERROR")
    assert len(both_missing.json()["error"]["details"]) == 2


# --- move_inbox ---------------------------------------------------------------------------


async def test_move_deallocates_when_assignee_not_subscribed(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    # 7…05: inbox 1, ALLOCATED to 04 (subscribed to inbox 1 only), label 6…02 of inbox 1.
    response = await post(client, "move_inbox", ACME_MANAGER, conversation_id=conversation(5),
                          inbox_id=INBOX_SUPPORT)  # fmt: skip
    assert response.status_code == 200
    data = response.json()["data"]
    assert (data["inbox_id"], data["state"], data["assigned_operator_id"]) == (
        INBOX_SUPPORT, "QUEUED", None)  # fmt: skip
    labels = await db.fetchval(
        "SELECT count(*) FROM conversation_labels WHERE conversation_id = $1",
        uuid.UUID(conversation(5)),
    )
    assert labels == 0  # the inbox-1 label 6…02 is detached: labels belong to one inbox


async def test_move_keeps_assignee_subscribed_to_target(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    await db.execute(
        "INSERT INTO operator_inbox_subscriptions (tenant_id, operator_id, inbox_id) "
        "SELECT tenant_id, id, $2 FROM operators WHERE id = $1",
        uuid.UUID(ACME_OP4), uuid.UUID(INBOX_BILLING),
    )  # fmt: skip
    response = await post(client, "move_inbox", ACME_ADMIN, conversation_id=conversation(7),
                          target_inbox_id=INBOX_BILLING)  # fmt: skip
    assert response.status_code == 200
    assert response.json()["data"]["assigned_operator_id"] == ACME_OP4
    assert response.json()["data"]["state"] == "ALLOCATED"


async def test_f25_move_keeps_the_grace_row_of_an_offline_assignee_who_stays(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    """The conversation stays allocated to its OFFLINE operator (subscribed to the target
    inbox): its grace row stays, so the sweeper can still release it."""
    await db.execute(
        "INSERT INTO operator_inbox_subscriptions (tenant_id, operator_id, inbox_id) "
        "SELECT tenant_id, id, $2 FROM operators WHERE id = $1",
        uuid.UUID(ACME_OP4), uuid.UUID(INBOX_BILLING),
    )  # fmt: skip
    offline = await client.put(
        "/api/v1/operator/status", headers=headers(ACME_OP4), json={"status": "OFFLINE"}
    )
    assert offline.status_code == 200
    assert await grace_rows(db, 7) == 1
    response = await post(client, "move_inbox", ACME_ADMIN, conversation_id=conversation(7),
                          target_inbox_id=INBOX_BILLING)  # fmt: skip
    assert response.status_code == 200
    assert response.json()["data"]["assigned_operator_id"] == ACME_OP4
    assert await grace_rows(db, 7) == 1


@pytest.mark.parametrize(
    ("caller", "number", "target", "status", "error"),
    [
        (ACME_OP4, 5, INBOX_SUPPORT, 403, "INSUFFICIENT_PERMISSIONS"),
        (ACME_MANAGER, 8, INBOX_SUPPORT, 409, "CONVERSATION_ALREADY_RESOLVED"),
        (ACME_MANAGER, 5, inbox(99), 404, "INBOX_NOT_FOUND"),
        (ACME_MANAGER, 5, INBOX_TECH_GENERAL, 404, "INBOX_NOT_FOUND"),  # never reveal it exists
        (ACME_MANAGER, 41, INBOX_SUPPORT, 404, "CONVERSATION_NOT_FOUND"),
    ],
)
async def test_move_rules(
    client: httpx.AsyncClient, caller: str, number: int, target: str, status: int, error: str
) -> None:
    response = await post(client, "move_inbox", caller, conversation_id=conversation(number),
                          inbox_id=target)  # fmt: skip
    assert code(response) == (status, error)


async def test_move_to_same_inbox_is_unchanged(client: httpx.AsyncClient) -> None:
    response = await post(client, "move_inbox", ACME_MANAGER, conversation_id=conversation(1),
                          inbox_id=INBOX_SALES)  # fmt: skip
    assert response.status_code == 200


async def test_concurrent_reassign_and_deallocate_never_mix(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    for _ in range(5):
        await db.execute(
            "UPDATE conversation_refs SET state = 'ALLOCATED', assigned_operator_id = $2 "
            "WHERE id = $1",
            uuid.UUID(conversation(6)), uuid.UUID(ACME_OP5),
        )  # fmt: skip
        results = await asyncio.gather(
            post(client, "reassign", ACME_MANAGER, conversation_id=conversation(6),
                 operator_id=ACME_OP4),
            post(client, "deallocate", ACME_ADMIN, conversation_id=conversation(6)),
        )  # fmt: skip
        assert Counter(r.status_code for r in results)[200] >= 1
        row = await conversation_row(db, 6)
        assert (row["state"], row["assigned_operator_id"]) in {
            ("QUEUED", None), ("ALLOCATED", ACME_OP4)}  # fmt: skip
