"""Subscriptions: /api/v1/inboxes/{inbox_id}/operators ."""

from __future__ import annotations

import asyncio
from uuid import UUID

import asyncpg
import httpx
import pytest

from inbox_allocation.api.schemas.envelope import Envelope
from inbox_allocation.api.schemas.subscriptions import SubscriptionList, SubscriptionOut
from inbox_allocation.db.seed_ids import ACME, inbox
from inbox_allocation.db.seed_ids import conversation as conv
from inbox_allocation.db.seed_ids import operator as op
from tests.support.http import error_code


def sub(n: int) -> str:
    return f"40000000-0000-0000-0000-{n:012d}"


ADMIN, MANAGER, OPERATOR = op(1), op(2), op(4)
TS_ADMIN = op(11)


def as_(operator: str, tenant: str = ACME) -> dict[str, str]:
    return {"X-Tenant-ID": tenant, "X-Operator-ID": operator}


def subs_url(inbox_id: str) -> str:
    return f"/api/v1/inboxes/{inbox_id}/operators"


async def subscribed(db: asyncpg.Pool, operator_id: str, inbox_id: str) -> bool:
    return bool(
        await db.fetchval(
            "SELECT EXISTS (SELECT 1 FROM operator_inbox_subscriptions "
            "WHERE operator_id = $1 AND inbox_id = $2)",
            UUID(operator_id),
            UUID(inbox_id),
        )
    )


async def conversation(db: asyncpg.Pool, n: int) -> tuple[str, UUID | None]:
    row = await db.fetchrow(
        "SELECT state::text, assigned_operator_id FROM conversation_refs WHERE id = $1",
        UUID(conv(n)),
    )
    assert row is not None
    return row[0], row[1]


async def grace_rows(db: asyncpg.Pool, n: int) -> int:
    count: int = await db.fetchval(
        "SELECT count(*) FROM grace_period_assignments WHERE conversation_id = $1", UUID(conv(n))
    )
    return count


# --- GET /inboxes/{inbox_id}/operators ------------------------------------------------------


async def test_list_returns_the_inboxes_subscription_rows(client: httpx.AsyncClient) -> None:
    response = await client.get(subs_url(inbox(1)), headers=as_(MANAGER))
    assert response.status_code == 200
    data = Envelope[SubscriptionList].model_validate(response.json()).data
    assert [str(s.id) for s in data.subscriptions] == [sub(n) for n in (1, 4, 8, 9, 10)]
    assert [str(s.operator_id) for s in data.subscriptions] == [op(n) for n in (1, 2, 4, 5, 6)]
    assert {str(s.inbox_id) for s in data.subscriptions} == {inbox(1)}
    assert data.meta.model_dump() == {
        "page": 1, "per_page": 50, "total": 5, "total_pages": 1, "has_more": False,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("query", "subs", "meta"),
    [
        ("?per_page=2", [1, 4], (1, 2, 5, 3, True)),
        ("?per_page=2&page=3", [10], (3, 2, 5, 3, False)),
        ("?per_page=2&page=4", [], (4, 2, 5, 3, False)),
        ("?per_page=101", [1, 4, 8, 9, 10], (1, 100, 5, 1, False)),
        ("?per_page=0&page=-1", [1, 4, 8, 9, 10], (1, 50, 5, 1, False)),
    ],
)
async def test_list_is_paginated(
    client: httpx.AsyncClient, query: str, subs: list[int], meta: tuple[int, int, int, int, bool]
) -> None:
    response = await client.get(subs_url(inbox(1)) + query, headers=as_(ADMIN))
    data = Envelope[SubscriptionList].model_validate(response.json()).data
    assert [str(s.id) for s in data.subscriptions] == [sub(n) for n in subs]
    m = data.meta
    assert (m.page, m.per_page, m.total, m.total_pages, m.has_more) == meta


async def test_list_of_an_inbox_without_subscriptions_is_empty(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    await db.execute("DELETE FROM operator_inbox_subscriptions WHERE inbox_id = $1", UUID(inbox(3)))
    response = await client.get(subs_url(inbox(3)) + "/", headers=as_(MANAGER))
    assert response.status_code == 200
    data = Envelope[SubscriptionList].model_validate(response.json()).data
    assert (data.subscriptions, data.meta.total, data.meta.total_pages) == ([], 0, 0)


@pytest.mark.parametrize(
    ("inbox_id", "status", "code"),
    [
        ("nope", 400, "BAD_REQUEST"),
        (inbox(99), 404, "INBOX_NOT_FOUND"),
        (inbox(4), 404, "INBOX_NOT_FOUND"),  # TechStart's inbox
    ],
)
async def test_list_errors(
    client: httpx.AsyncClient, inbox_id: str, status: int, code: str
) -> None:
    response = await client.get(subs_url(inbox_id), headers=as_(MANAGER))
    assert response.status_code == status
    assert error_code(response) == code


async def test_list_needs_a_manager(client: httpx.AsyncClient) -> None:
    response = await client.get(subs_url(inbox(1)), headers=as_(OPERATOR))
    assert response.status_code == 403
    assert error_code(response) == "FORBIDDEN"


# --- POST /inboxes/{inbox_id}/operators -----------------------------------------------------


async def test_subscribe_creates_the_subscription(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    response = await client.post(
        subs_url(inbox(1)), headers=as_(MANAGER), json={"operator_id": op(10)}
    )
    assert response.status_code == 201
    data = Envelope[SubscriptionOut].model_validate(response.json()).data
    assert (str(data.operator_id), str(data.inbox_id)) == (op(10), inbox(1))
    row = await db.fetchrow("SELECT * FROM operator_inbox_subscriptions WHERE id = $1", data.id)
    assert row is not None
    assert (row["operator_id"], row["inbox_id"]) == (UUID(op(10)), UUID(inbox(1)))
    assert row["created_at"] == data.created_at


async def test_subscribe_with_a_trailing_slash_and_another_uuid_form(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    response = await client.post(
        subs_url(inbox(3)) + "/",
        headers=as_(ADMIN),
        json={"operator_id": op(7).replace("-", "").upper()},
    )
    assert response.status_code == 201
    assert await subscribed(db, op(7), inbox(3))


async def test_subscribing_again_returns_the_existing_row(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    response = await client.post(
        subs_url(inbox(1)), headers=as_(MANAGER), json={"operator_id": OPERATOR}
    )
    assert response.status_code == 201
    data = Envelope[SubscriptionOut].model_validate(response.json()).data
    assert str(data.id) == sub(8)
    assert await db.fetchval("SELECT count(*) FROM operator_inbox_subscriptions") == 22


async def test_concurrent_identical_subscribes_give_one_row(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    responses = await asyncio.gather(
        *(
            client.post(subs_url(inbox(2)), headers=as_(MANAGER), json={"operator_id": op(10)})
            for _ in range(10)
        )
    )
    assert [r.status_code for r in responses] == [201] * 10
    ids = {Envelope[SubscriptionOut].model_validate(r.json()).data.id for r in responses}
    assert len(ids) == 1
    count = await db.fetchval(
        "SELECT count(*) FROM operator_inbox_subscriptions WHERE operator_id = $1 "
        "AND inbox_id = $2",
        UUID(op(10)),
        UUID(inbox(2)),
    )
    assert count == 1


@pytest.mark.parametrize(
    ("inbox_id", "body", "status", "code"),
    [
        ("bad", {"operator_id": op(10)}, 400, "BAD_REQUEST"),
        (inbox(1), {"operator_id": "bad"}, 400, "BAD_REQUEST"),
        (inbox(1), {"operator_id": 42}, 400, "BAD_REQUEST"),
        (inbox(1), {}, 400, "VALIDATION_ERROR"),
        (inbox(1), {"operator_id": None}, 400, "VALIDATION_ERROR"),
        (inbox(1), {"operator_id": "00000000-0000-0000-0000-000000000000"}, 400,
         "VALIDATION_ERROR"),
        (inbox(99), {"operator_id": op(10)}, 404, "INBOX_NOT_FOUND"),
        (inbox(4), {"operator_id": op(10)}, 404, "INBOX_NOT_FOUND"),  # TechStart's inbox
        (inbox(1), {"operator_id": op(99)}, 404, "NOT_FOUND"),
        (inbox(1), {"operator_id": op(13)}, 404, "NOT_FOUND"),  # TechStart's operator
        (inbox(4), {"operator_id": op(13)}, 404, "INBOX_NOT_FOUND"),  # both TechStart's
    ],
)  # fmt: skip
async def test_subscribe_errors(
    client: httpx.AsyncClient,
    db: asyncpg.Pool,
    inbox_id: str,
    body: dict[str, object],
    status: int,
    code: str,
) -> None:
    response = await client.post(subs_url(inbox_id), headers=as_(MANAGER), json=body)
    assert response.status_code == status
    assert error_code(response) == code
    assert await db.fetchval("SELECT count(*) FROM operator_inbox_subscriptions") == 22


async def test_subscribe_with_a_malformed_body_is_a_bad_request(
    client: httpx.AsyncClient,
) -> None:
    for content in (b"", b"{", b'"x"'):
        response = await client.post(subs_url(inbox(1)), headers=as_(MANAGER), content=content)
        assert response.status_code == 400
        assert error_code(response) == "BAD_REQUEST"


async def test_subscribe_needs_a_manager(client: httpx.AsyncClient, db: asyncpg.Pool) -> None:
    response = await client.post(
        subs_url(inbox(1)), headers=as_(OPERATOR), json={"operator_id": op(10)}
    )
    assert response.status_code == 403
    assert error_code(response) == "FORBIDDEN"
    assert not await subscribed(db, op(10), inbox(1))


# --- DELETE /inboxes/{inbox_id}/operators/{operator_id} and ?operator_id= -------------------


async def test_unsubscribe_requeues_the_operators_conversations_in_that_inbox(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    # Operator 4 holds 7…05 and 7…07 (grace row 9…01) in inbox 1; give it one in inbox 2 too,
    # which must stay with it.
    await db.execute(
        "INSERT INTO operator_inbox_subscriptions (tenant_id, operator_id, inbox_id) "
        "SELECT tenant_id, id, $2 FROM operators WHERE id = $1",
        UUID(OPERATOR),
        UUID(inbox(2)),
    )
    await db.execute(
        "UPDATE conversation_refs SET state = 'ALLOCATED', assigned_operator_id = $1 WHERE id = $2",
        UUID(OPERATOR),
        UUID(conv(16)),
    )
    before = await db.fetchval(
        "SELECT updated_at FROM conversation_refs WHERE id = $1", UUID(conv(5))
    )

    response = await client.delete(f"{subs_url(inbox(1))}/{OPERATOR}", headers=as_(MANAGER))
    assert response.status_code == 204
    assert response.content == b""
    assert not await subscribed(db, OPERATOR, inbox(1))
    assert await subscribed(db, OPERATOR, inbox(2))
    assert await conversation(db, 5) == ("QUEUED", None)
    assert await conversation(db, 7) == ("QUEUED", None)
    assert await grace_rows(db, 7) == 0
    after = await db.fetchval(
        "SELECT updated_at FROM conversation_refs WHERE id = $1", UUID(conv(5))
    )
    assert after > before
    # Untouched: its conversation in inbox 2, its resolved ones, the other operators'.
    assert await conversation(db, 16) == ("ALLOCATED", UUID(OPERATOR))
    assert await conversation(db, 8) == ("RESOLVED", UUID(OPERATOR))
    assert await conversation(db, 6) == ("ALLOCATED", UUID(op(5)))
    assert await grace_rows(db, 23) == 1


async def test_unsubscribe_by_query_parameter(client: httpx.AsyncClient, db: asyncpg.Pool) -> None:
    response = await client.delete(
        subs_url(inbox(1)), params={"operator_id": op(5)}, headers=as_(ADMIN)
    )
    assert response.status_code == 204
    assert not await subscribed(db, op(5), inbox(1))
    assert await conversation(db, 6) == ("QUEUED", None)
    slash = await client.delete(
        subs_url(inbox(2)) + "/", params={"operator_id": op(7)}, headers=as_(ADMIN)
    )
    assert slash.status_code == 204
    assert not await subscribed(db, op(7), inbox(2))
    assert await conversation(db, 21) == ("QUEUED", None)
    assert await conversation(db, 23) == ("QUEUED", None)
    assert await grace_rows(db, 23) == 0


async def test_unsubscribe_when_not_subscribed_is_still_204(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    for operator in (op(10), op(99), op(13)):  # not subscribed, unknown, other tenant
        response = await client.delete(f"{subs_url(inbox(1))}/{operator}", headers=as_(MANAGER))
        assert response.status_code == 204
    assert await db.fetchval("SELECT count(*) FROM operator_inbox_subscriptions") == 22


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        (f"/api/v1/inboxes/bad/operators/{op(4)}", 400, "BAD_REQUEST"),
        (f"/api/v1/inboxes/{inbox(1)}/operators/bad", 400, "BAD_REQUEST"),
        (f"/api/v1/inboxes/{inbox(99)}/operators/{op(4)}", 404, "INBOX_NOT_FOUND"),
        (f"/api/v1/inboxes/{inbox(4)}/operators/{op(13)}", 404, "INBOX_NOT_FOUND"),  # TechStart's
        (f"/api/v1/inboxes/{inbox(4)}/operators?operator_id={op(13)}", 404, "INBOX_NOT_FOUND"),
        (f"/api/v1/inboxes/{inbox(1)}/operators?operator_id=bad", 400, "BAD_REQUEST"),
        (f"/api/v1/inboxes/{inbox(1)}/operators", 400, "VALIDATION_ERROR"),
        (f"/api/v1/inboxes/{inbox(1)}/operators?operator_id=", 400, "VALIDATION_ERROR"),
    ],
)
async def test_unsubscribe_errors_change_nothing(
    client: httpx.AsyncClient, db: asyncpg.Pool, path: str, status: int, code: str
) -> None:
    response = await client.delete(path, headers=as_(MANAGER))
    assert response.status_code == status
    assert error_code(response) == code
    assert await db.fetchval("SELECT count(*) FROM operator_inbox_subscriptions") == 22
    assert await conversation(db, 42) == ("ALLOCATED", UUID(op(13)))


async def test_unsubscribe_needs_a_manager(client: httpx.AsyncClient, db: asyncpg.Pool) -> None:
    for response in (
        await client.delete(f"{subs_url(inbox(1))}/{op(5)}", headers=as_(OPERATOR)),
        await client.delete(
            subs_url(inbox(1)), params={"operator_id": op(5)}, headers=as_(OPERATOR)
        ),
    ):
        assert response.status_code == 403
        assert error_code(response) == "FORBIDDEN"
    assert await subscribed(db, op(5), inbox(1))
    assert await conversation(db, 6) == ("ALLOCATED", UUID(op(5)))


async def test_resubscribe_after_unsubscribe_gives_a_new_row(
    client: httpx.AsyncClient,
) -> None:
    url = subs_url(inbox(1))
    assert (await client.delete(f"{url}/{op(5)}", headers=as_(MANAGER))).status_code == 204
    response = await client.post(url, headers=as_(MANAGER), json={"operator_id": op(5)})
    assert response.status_code == 201
    assert str(Envelope[SubscriptionOut].model_validate(response.json()).data.id) != sub(9)
