"""GET /api/v1/conversations: visibility, filters, sorts and keyset pagination
(docs/decisions.md#visibility)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg
import httpx
import pytest

from inbox_allocation.api.schemas.conversation_queries import ConversationList
from inbox_allocation.api.schemas.envelope import Envelope, ErrorEnvelope
from inbox_allocation.db.seed_ids import ACME, ACME_ADMIN, ACME_MANAGER, TECH_OP14, TECHSTART, label
from inbox_allocation.db.seed_ids import ACME_OP4 as ACME_OPERATOR_INBOX_1
from inbox_allocation.db.seed_ids import ACME_OP7 as ACME_OPERATOR_INBOX_2
from inbox_allocation.db.seed_ids import INBOX_SALES as INBOX_1
from inbox_allocation.db.seed_ids import INBOX_SUPPORT as INBOX_2
from inbox_allocation.db.seed_ids import INBOX_TECH_GENERAL as INBOX_4
from inbox_allocation.db.seed_ids import TECH_ADMIN as TECHSTART_ADMIN
from inbox_allocation.db.seed_ids import conversation as conv
from tests.support.http import headers as as_caller
from tests.support.priority_reference import allocation_order_key

PATH = "/api/v1/conversations"


async def list_page(
    client: httpx.AsyncClient, operator: str = ACME_MANAGER, tenant: str = ACME, **params: Any
) -> ConversationList:
    response = await client.get(PATH, params=params, headers=as_caller(operator, tenant))
    assert response.status_code == 200, response.text
    body = Envelope[ConversationList].model_validate(response.json())
    assert body.success is True
    assert body.data.meta.count == len(body.data.conversations)
    assert (body.data.meta.next_cursor is not None) == body.data.meta.has_more
    if not body.data.meta.has_more:
        assert "next_cursor" not in response.json()["data"]["meta"]
    return body.data


async def list_error(client: httpx.AsyncClient, **params: Any) -> tuple[int, ErrorEnvelope]:
    response = await client.get(PATH, params=params, headers=as_caller(ACME_MANAGER))
    return response.status_code, ErrorEnvelope.model_validate(response.json())


async def all_pages(client: httpx.AsyncClient, **params: Any) -> list[str]:
    """Follow next_cursor to the end; checks has_more is false exactly on the last page."""
    ids: list[str] = []
    cursor: str | None = None
    for _ in range(200):
        page = await list_page(client, **params, **({"cursor": cursor} if cursor else {}))
        ids += [str(c.id) for c in page.conversations]
        if not page.meta.has_more:
            return ids
        assert page.meta.count == int(params.get("per_page", 50))
        cursor = page.meta.next_cursor
    raise AssertionError("pagination did not end")


ROW_COLUMNS = """c.id, c.last_message_at, c.message_count, c.state::text AS state,
    t.priority_weight_alpha::float8 AS alpha, t.priority_weight_beta::float8 AS beta"""


async def acme_rows(db: asyncpg.Pool) -> list[asyncpg.Record]:
    return list(
        await db.fetch(
            f"""SELECT {ROW_COLUMNS} FROM conversation_refs c
                JOIN tenants t ON t.id = c.tenant_id WHERE c.tenant_id = $1""",
            ACME,
        )
    )


def expected_order(rows: list[asyncpg.Record], sort: str, at: datetime | None = None) -> list[str]:
    def newest(r: asyncpg.Record) -> tuple[datetime, str]:
        return (r["last_message_at"], str(r["id"]))

    if sort == "newest":
        ordered = sorted(rows, key=newest, reverse=True)
    elif sort == "oldest":
        ordered = sorted(rows, key=newest)
    else:  # the queue in allocation order: live priority DESC, longest waiting first, id
        assert at is not None, "priority order needs the evaluation instant"
        ordered = sorted(
            (r for r in rows if r["state"] == "QUEUED"),
            key=lambda r: allocation_order_key(
                message_count=r["message_count"], last_message_at=r["last_message_at"],
                id=str(r["id"]), at=at, alpha=r["alpha"], beta=r["beta"],
            ),
        )  # fmt: skip
    return [str(r["id"]) for r in ordered]


async def make_ties(db: asyncpg.Pool) -> None:
    """Equal last_message_at and message counts (so equal priorities): the id tie-breaks
    are exercised."""
    await db.execute(
        """
        UPDATE conversation_refs
        SET last_message_at = date_trunc('second', now()) - interval '2 minutes',
            message_count = 3
        WHERE id = ANY($1::uuid[])
        """,
        [conv(n) for n in (1, 2, 3, 16, 17, 31)],
    )
    await db.execute(
        """
        UPDATE conversation_refs
        SET last_message_at = date_trunc('second', now()) - interval '30 hours',
            message_count = 7
        WHERE id = ANY($1::uuid[])
        """,
        [conv(n) for n in (4, 5, 20, 33)],
    )


async def add_conversations(db: asyncpg.Pool, count: int) -> None:
    await db.execute(
        """
        INSERT INTO conversation_refs (tenant_id, inbox_id, external_conversation_id,
            customer_phone_number, state, last_message_at, message_count, priority_score)
        SELECT $1, $2, 'bulk-' || g, '+1999000' || lpad(g::text, 4, '0'), 'QUEUED',
               now() - g * interval '1 minute', 1, (g % 7) / 10.0
        FROM generate_series(1, $3) g
        """,
        ACME,
        INBOX_1,
        count,
    )


# ---- visibility -------------------------------------------------------------------------


@pytest.mark.parametrize("operator", [ACME_ADMIN, ACME_MANAGER])
async def test_manager_level_sees_the_whole_tenant(
    client: httpx.AsyncClient, operator: str
) -> None:
    page = await list_page(client, operator, per_page=100)
    assert page.meta.count == 38
    assert page.meta.has_more is False
    assert {str(c.tenant_id) for c in page.conversations} == {ACME}
    assert len({c.id for c in page.conversations}) == 38


async def test_other_tenant_sees_only_its_own(client: httpx.AsyncClient) -> None:
    page = await list_page(client, TECHSTART_ADMIN, TECHSTART, per_page=100)
    assert page.meta.count == 12
    assert {str(c.tenant_id) for c in page.conversations} == {TECHSTART}


async def test_operator_sees_only_subscribed_inboxes(client: httpx.AsyncClient) -> None:
    page = await list_page(client, ACME_OPERATOR_INBOX_1, per_page=100)
    assert page.meta.count == 15
    assert {str(c.inbox_id) for c in page.conversations} == {INBOX_1}


async def test_operator_filtering_another_inbox_gets_nothing(client: httpx.AsyncClient) -> None:
    page = await list_page(client, ACME_OPERATOR_INBOX_1, inbox_id=INBOX_2)
    assert page.conversations == []
    assert page.meta.has_more is False


async def test_operator_without_subscriptions_sees_nothing(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    await db.execute(
        "DELETE FROM operator_inbox_subscriptions WHERE operator_id = $1", ACME_OPERATOR_INBOX_1
    )
    page = await list_page(client, ACME_OPERATOR_INBOX_1)
    assert page.conversations == []
    assert page.meta.count == 0


async def test_trailing_slash_is_accepted(client: httpx.AsyncClient) -> None:
    response = await client.get(PATH + "/", headers=as_caller(ACME_MANAGER))
    assert response.status_code == 200
    assert Envelope[ConversationList].model_validate(response.json()).data.meta.count == 38


# ---- labels ------------------------------------------------------------------------------


async def test_every_conversation_carries_its_labels(client: httpx.AsyncClient) -> None:
    page = await list_page(client, per_page=100)
    by_id = {str(c.id): c for c in page.conversations}
    two = by_id[conv(2)].labels
    assert [(str(x.id), x.name, x.color) for x in two] == [
        (label(3), "Enterprise", "#9B59B6"),
        (label(1), "Hot Lead", "#FF5733"),
    ]
    assert by_id[conv(3)].labels == []
    raw = (await client.get(PATH, headers=as_caller(ACME_MANAGER))).json()
    assert all("labels" in c for c in raw["data"]["conversations"])


async def test_label_without_colour_omits_color(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    await db.execute("UPDATE labels SET color = NULL WHERE id = $1", label(2))
    raw = (await client.get(PATH, headers=as_caller(ACME_MANAGER))).json()
    five = next(c for c in raw["data"]["conversations"] if c["id"] == conv(5))
    assert five["labels"] == [{"id": label(2), "name": "Follow Up"}]


# ---- filters -----------------------------------------------------------------------------


async def test_state_filter(client: httpx.AsyncClient) -> None:
    page = await list_page(client, state="QUEUED", per_page=100)
    assert page.meta.count == 11
    assert {c.state for c in page.conversations} == {"QUEUED"}


async def test_inbox_filter(client: httpx.AsyncClient) -> None:
    page = await list_page(client, inbox_id=INBOX_2, per_page=100)
    assert page.meta.count == 15
    assert {str(c.inbox_id) for c in page.conversations} == {INBOX_2}


async def test_operator_filter_is_the_assignee(client: httpx.AsyncClient) -> None:
    page = await list_page(client, operator_id=ACME_OPERATOR_INBOX_1, per_page=100)
    assert {str(c.id) for c in page.conversations} == {conv(n) for n in (5, 7, 8, 11, 14)}
    assert {str(c.assigned_operator_id) for c in page.conversations} == {ACME_OPERATOR_INBOX_1}


async def test_label_filter_works(client: httpx.AsyncClient) -> None:
    page = await list_page(client, label_id=label(1))
    assert {str(c.id) for c in page.conversations} == {conv(1), conv(2)}


async def test_filters_combine(client: httpx.AsyncClient) -> None:
    page = await list_page(client, label_id=label(3), state="RESOLVED")
    assert [str(c.id) for c in page.conversations] == [conv(8)]
    none = await list_page(client, label_id=label(3), state="QUEUED", inbox_id=INBOX_2)
    assert none.conversations == []


async def test_another_tenants_ids_match_nothing(client: httpx.AsyncClient) -> None:
    assert (await list_page(client, label_id=label(9))).conversations == []
    assert (await list_page(client, inbox_id=INBOX_4)).conversations == []
    techstart_operator = TECH_OP14
    assert (await list_page(client, operator_id=techstart_operator)).conversations == []


async def test_empty_filter_values_mean_no_filter(client: httpx.AsyncClient) -> None:
    page = await list_page(client, state="", inbox_id="", sort="", cursor="", per_page=100)
    assert page.meta.count == 38


@pytest.mark.parametrize(
    "params",
    [
        {"state": "queued"},
        {"state": "OPEN"},
        {"inbox_id": "not-a-uuid"},
        {"operator_id": "123"},
        {"label_id": "zzzzzzzz-0000-0000-0000-000000000001"},
        {"sort": "priority_desc"},
        {"cursor": "not a cursor!"},
        {"cursor": "eyJmb28iOiAxfQ=="},  # valid base64 JSON, not a cursor
        {"cursor": "W10="},  # a JSON array
    ],
)
async def test_invalid_filters_are_validation_errors(
    client: httpx.AsyncClient, params: dict[str, str]
) -> None:
    status, body = await list_error(client, **params)
    assert status == 400
    assert body.error.code == "VALIDATION_ERROR"
    assert body.error.details


async def test_every_invalid_filter_is_listed(client: httpx.AsyncClient) -> None:
    status, body = await list_error(client, state="x", inbox_id="x", operator_id="x", sort="x")
    assert status == 400
    assert body.error.details is not None
    assert len(body.error.details) == 4


# ---- per_page ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("per_page", "expected"),
    [(None, 50), ("0", 50), ("-3", 50), ("abc", 50), ("7", 7), ("1000", 100)],
)
async def test_per_page_is_clamped(
    client: httpx.AsyncClient, db: asyncpg.Pool, per_page: str | None, expected: int
) -> None:
    await add_conversations(db, 80)  # 118 in Acme
    params = {"per_page": per_page} if per_page is not None else {}
    page = await list_page(client, **params, page="3")  # `page` is ignored
    assert page.meta.count == expected
    assert page.meta.has_more is True


# ---- sorts and keyset pagination --------------------------------------------------------


@pytest.mark.parametrize(
    "sort", ["newest", "oldest", "priority", "OLDEST", "Priority", "NEWEST", None]
)
async def test_first_page_follows_the_sort(
    client: httpx.AsyncClient, db: asyncpg.Pool, pinned_clock: datetime, sort: str | None
) -> None:  # the sort is applied case-insensitively
    await make_ties(db)
    params = {"sort": sort} if sort else {}
    page = await list_page(client, per_page=100, **params)
    expected = expected_order(await acme_rows(db), (sort or "newest").lower(), pinned_clock)
    assert [str(c.id) for c in page.conversations] == expected


@pytest.mark.parametrize("sort", ["newest", "oldest", "priority"])
@pytest.mark.parametrize("per_page", [1, 4, 7, 19, 38])
async def test_paging_to_the_end_gives_every_row_once_in_order(
    client: httpx.AsyncClient, db: asyncpg.Pool, pinned_clock: datetime, sort: str, per_page: int
) -> None:
    await make_ties(db)
    ids = await all_pages(client, sort=sort, per_page=per_page)
    assert ids == expected_order(await acme_rows(db), sort, pinned_clock)


@pytest.mark.parametrize("sort", ["newest", "oldest", "priority"])
async def test_paging_with_filters_and_operator_visibility(
    client: httpx.AsyncClient, db: asyncpg.Pool, pinned_clock: datetime, sort: str
) -> None:
    await make_ties(db)
    ids: list[str] = []
    cursor: str | None = None
    while True:
        extra = {"cursor": cursor} if cursor else {}
        page = await list_page(
            client, ACME_OPERATOR_INBOX_2, sort=sort, per_page=3, state="QUEUED", **extra
        )
        ids += [str(c.id) for c in page.conversations]
        if not page.meta.has_more:
            break
        cursor = page.meta.next_cursor
    rows = await db.fetch(
        f"""SELECT {ROW_COLUMNS} FROM conversation_refs c
            JOIN tenants t ON t.id = c.tenant_id WHERE c.inbox_id = $1 AND c.state = 'QUEUED'""",
        INBOX_2,
    )
    assert ids == expected_order(list(rows), sort, pinned_clock)


async def test_has_more_is_false_when_the_last_page_is_exactly_full(
    client: httpx.AsyncClient,
) -> None:
    first = await list_page(client, per_page=19)
    assert first.meta.count == 19
    assert first.meta.has_more is True
    second = await list_page(client, per_page=19, cursor=first.meta.next_cursor)
    assert second.meta.count == 19
    assert second.meta.has_more is False
    assert second.meta.next_cursor is None


async def test_cursor_is_url_safe_base64_with_padding(client: httpx.AsyncClient) -> None:
    page = await list_page(client, per_page=5, sort="priority")
    cursor = page.meta.next_cursor
    assert cursor is not None
    assert len(cursor) % 4 == 0
    assert set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=")


@pytest.mark.parametrize(
    ("issued_for", "used_with"),
    [("newest", "oldest"), ("oldest", "newest"), ("priority", "newest"), ("newest", "priority")],
)
async def test_cursor_of_another_sort_is_rejected(
    client: httpx.AsyncClient, issued_for: str, used_with: str
) -> None:
    page = await list_page(client, per_page=5, sort=issued_for)
    status, body = await list_error(client, sort=used_with, cursor=page.meta.next_cursor)
    assert status == 400
    assert body.error.code == "VALIDATION_ERROR"


async def test_cursor_sort_matches_case_insensitively(client: httpx.AsyncClient) -> None:
    page = await list_page(client, per_page=5, sort="oldest")
    again = await list_page(client, per_page=5, sort="OLDEST", cursor=page.meta.next_cursor)
    assert again.meta.count == 5


async def test_cursor_without_padding_is_accepted(client: httpx.AsyncClient) -> None:
    page = await list_page(client, per_page=5)
    assert page.meta.next_cursor is not None
    unpadded = page.meta.next_cursor.rstrip("=")
    assert (await list_page(client, per_page=5, cursor=unpadded)).meta.count == 5


# ---- sort=priority lists the queue --------------------------------------------------------


@pytest.mark.parametrize("state", ["ALLOCATED", "RESOLVED"])
async def test_priority_sort_with_another_state_than_queued_is_refused(
    client: httpx.AsyncClient, state: str
) -> None:
    response = await client.get(
        PATH, params={"sort": "priority", "state": state}, headers=as_caller(ACME_MANAGER)
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"


async def test_priority_sort_by_operator_is_empty_and_by_label_lists_its_queued_ones(
    client: httpx.AsyncClient, db: asyncpg.Pool, pinned_clock: datetime
) -> None:
    by_operator = await list_page(client, sort="priority", operator_id=ACME_ADMIN)
    assert by_operator.conversations == []
    labelled = await list_page(client, sort="priority", label_id=label(1), per_page=1)
    ids = [str(c.id) for c in labelled.conversations]
    cursor = labelled.meta.next_cursor
    while cursor:
        page = await list_page(client, sort="priority", label_id=label(1), per_page=1,
                               cursor=cursor)  # fmt: skip
        ids += [str(c.id) for c in page.conversations]
        cursor = page.meta.next_cursor
    rows = await db.fetch(
        f"""SELECT {ROW_COLUMNS} FROM conversation_refs c
            JOIN tenants t ON t.id = c.tenant_id
            JOIN conversation_labels cl ON cl.tenant_id = $2 AND cl.conversation_id = c.id
            WHERE c.tenant_id = $2 AND cl.label_id = $1""",
        label(1), uuid.UUID(ACME),
    )  # fmt: skip
    assert ids == expected_order(list(rows), "priority", pinned_clock)
    assert ids  # the seed's label 1 is on queued conversations
