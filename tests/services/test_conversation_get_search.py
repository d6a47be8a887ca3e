"""GET /api/v1/conversations/{id} (docs/decisions.md#visibility) and GET /api/v1/search
(docs/decisions.md#search)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest

from inbox_allocation.api.schemas.conversation_queries import SearchResult
from inbox_allocation.api.schemas.conversations import Conversation
from inbox_allocation.api.schemas.envelope import Envelope, ErrorEnvelope
from inbox_allocation.db.seed_ids import ACME, ACME_ADMIN, ACME_MANAGER, TECHSTART
from inbox_allocation.db.seed_ids import ACME_OP4 as ACME_OPERATOR_INBOX_1
from inbox_allocation.db.seed_ids import ACME_OP7 as ACME_OPERATOR_INBOX_2
from inbox_allocation.db.seed_ids import INBOX_SALES as INBOX_1
from inbox_allocation.db.seed_ids import TECH_ADMIN as TECHSTART_ADMIN
from inbox_allocation.db.seed_ids import conversation as conv
from tests.support.http import headers as as_caller
from tests.support.priority_reference import priority

PHONE_1 = "+14155551001"  # conversation 7…01, inbox 1


async def error_of(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, ErrorEnvelope.model_validate(response.json()).error.code


# ---- GET /conversations/{id} --------------------------------------------------------------


async def test_get_returns_the_conversation_with_its_labels(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/api/v1/conversations/{conv(2)}", headers=as_caller(ACME_ADMIN))
    assert response.status_code == 200
    data = Envelope[Conversation].model_validate(response.json()).data
    assert str(data.id) == conv(2)
    assert data.state == "QUEUED"
    assert data.customer_phone_number == "+14155551002"
    # The live value (docs/decisions.md#live-priority), not the seed's stored 0.85: 5 messages,
    # waiting 15 min, Acme's weights 0.6 / 0.4.
    live = priority(message_count=5, last_message_at=data.last_message_at,
                    at=datetime.now(UTC), alpha=0.6, beta=0.4)  # fmt: skip
    assert data.priority_score == pytest.approx(live, abs=1e-5)
    assert [x.name for x in data.labels] == ["Enterprise", "Hot Lead"]


async def test_get_without_labels_has_an_empty_array(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/api/v1/conversations/{conv(3)}", headers=as_caller(ACME_ADMIN))
    assert response.json()["data"]["labels"] == []


async def test_get_accepts_the_other_uuid_forms(client: httpx.AsyncClient) -> None:
    compact = conv(1).replace("-", "").upper()
    response = await client.get(f"/api/v1/conversations/{compact}", headers=as_caller(ACME_ADMIN))
    assert response.status_code == 200
    assert response.json()["data"]["id"] == conv(1)


async def test_subscribed_operator_can_read(client: httpx.AsyncClient) -> None:
    response = await client.get(
        f"/api/v1/conversations/{conv(1)}", headers=as_caller(ACME_OPERATOR_INBOX_1)
    )
    assert response.status_code == 200


async def test_unsubscribed_operator_gets_404(client: httpx.AsyncClient) -> None:
    response = await client.get(
        f"/api/v1/conversations/{conv(1)}", headers=as_caller(ACME_OPERATOR_INBOX_2)
    )
    assert await error_of(response) == (404, "NOT_FOUND")


async def test_manager_needs_no_subscription(client: httpx.AsyncClient) -> None:
    manager_of_inboxes_1_and_2 = ACME_MANAGER
    response = await client.get(
        f"/api/v1/conversations/{conv(31)}", headers=as_caller(manager_of_inboxes_1_and_2)
    )
    assert response.status_code == 200


async def test_another_tenants_conversation_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/api/v1/conversations/{conv(39)}", headers=as_caller(ACME_ADMIN))
    assert await error_of(response) == (404, "NOT_FOUND")
    own = await client.get(
        f"/api/v1/conversations/{conv(39)}", headers=as_caller(TECHSTART_ADMIN, TECHSTART)
    )
    assert own.status_code == 200


async def test_unknown_conversation_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/api/v1/conversations/{conv(99)}", headers=as_caller(ACME_ADMIN))
    assert await error_of(response) == (404, "NOT_FOUND")


async def test_non_uuid_id_is_bad_request(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/conversations/nope", headers=as_caller(ACME_ADMIN))
    assert await error_of(response) == (400, "BAD_REQUEST")


# ---- GET /search -------------------------------------------------------------------------


async def search(client: httpx.AsyncClient, url: str, operator: str = ACME_MANAGER) -> SearchResult:
    response = await client.get(url, headers=as_caller(operator))
    assert response.status_code == 200, response.text
    return Envelope[SearchResult].model_validate(response.json()).data


@pytest.mark.parametrize(
    "query",
    [
        "phone=%2B14155551001",  # encoded plus
        "phone=+14155551001",  # unencoded plus: arrives as a space (docs/decisions.md#search)
        "phone=14155551001",
        "phone=1415-555-1001",
        "phone=%2B1%20(415)%20555.1001",
        "phone=%2014155551001%20",
        "q=%2B14155551001",  # alias
        "q=+14155551001",
        "phone=&q=14155551001",
    ],
)
async def test_search_normalises_the_number(client: httpx.AsyncClient, query: str) -> None:
    result = await search(client, f"/api/v1/search?{query}")
    assert [str(c.id) for c in result.conversations] == [conv(1)]
    assert result.meta.query == PHONE_1
    assert result.meta.count == 1
    assert [x.name for x in result.conversations[0].labels] == ["Hot Lead"]


async def test_search_with_httpx_params(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/api/v1/search", params={"phone": " 14155551001"}, headers=as_caller(ACME_MANAGER)
    )
    assert Envelope[SearchResult].model_validate(response.json()).data.meta.count == 1


async def test_search_matches_exactly(client: httpx.AsyncClient) -> None:
    result = await search(client, "/api/v1/search?phone=%2B1415555100")
    assert result.conversations == []
    assert result.meta.count == 0
    assert result.meta.query == "+1415555100"


async def test_search_does_not_cross_tenants(client: httpx.AsyncClient) -> None:
    techstart_number = "%2B14155554001"
    assert (await search(client, f"/api/v1/search?phone={techstart_number}")).conversations == []


async def test_search_operator_sees_only_subscribed_inboxes(client: httpx.AsyncClient) -> None:
    url = "/api/v1/search?phone=%2B14155551001"
    assert (await search(client, url, ACME_OPERATOR_INBOX_2)).conversations == []
    assert (await search(client, url, ACME_OPERATOR_INBOX_1)).meta.count == 1


async def test_search_orders_by_creation_newest_first_and_caps_at_100(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    await db.execute(
        """
        INSERT INTO conversation_refs (tenant_id, inbox_id, external_conversation_id,
            customer_phone_number, created_at, last_message_at)
        SELECT $1, $2, 'dup-' || g, $3, now() - g * interval '1 minute', now()
        FROM generate_series(1, 110) g
        """,
        ACME,
        INBOX_1,
        PHONE_1,
    )
    result = await search(client, "/api/v1/search?phone=%2B14155551001")
    assert result.meta.count == 100
    created = [c.created_at for c in result.conversations]
    assert created == sorted(created, reverse=True)
    assert conv(1) not in {str(c.id) for c in result.conversations}  # the oldest (2 h ago)


@pytest.mark.parametrize(
    "query", ["", "phone=", "phone=%20%20", "q=", "phone=---", "phone=()", "phone=%2B", "phone=%00"]
)
async def test_blank_search_is_a_validation_error(client: httpx.AsyncClient, query: str) -> None:
    response = await client.get(f"/api/v1/search?{query}", headers=as_caller(ACME_MANAGER))
    assert await error_of(response) == (400, "VALIDATION_ERROR")


async def test_search_has_no_trailing_slash_variant(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/search/?phone=1", headers=as_caller(ACME_MANAGER))
    assert response.status_code == 404


async def test_concurrent_reads(client: httpx.AsyncClient) -> None:
    calls: list[Any] = [
        client.get(f"/api/v1/conversations/{conv(n)}", headers=as_caller(ACME_ADMIN))
        for n in range(1, 39)
    ]
    responses = await asyncio.gather(*calls)
    assert {r.status_code for r in responses} == {200}
