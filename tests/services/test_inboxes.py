"""Inboxes: /api/v1/inboxes and /api/v1/inboxes/{id} ."""

from __future__ import annotations

import asyncio
from uuid import UUID

import asyncpg
import httpx
import pytest

from inbox_allocation.api.schemas.envelope import Envelope, ErrorEnvelope
from inbox_allocation.api.schemas.inboxes import InboxList, InboxOut
from inbox_allocation.db.seed_ids import ACME, TECHSTART, inbox
from inbox_allocation.db.seed_ids import conversation as conv
from inbox_allocation.db.seed_ids import operator as op
from tests.support.http import error_code

BASE = "/api/v1/inboxes"


ADMIN, MANAGER, OPERATOR = op(1), op(2), op(4)
TS_ADMIN = op(11)


def as_(operator: str, tenant: str = ACME) -> dict[str, str]:
    return {"X-Tenant-ID": tenant, "X-Operator-ID": operator}


async def inbox_row(db: asyncpg.Pool, inbox_id: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await db.fetchrow(
        "SELECT * FROM inboxes WHERE id = $1", UUID(inbox_id)
    )
    return row


# --- GET /inboxes ---------------------------------------------------------------------------


async def test_list_returns_the_callers_subscribed_inboxes_in_subscription_order(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get(BASE, headers=as_(ADMIN))
    assert response.status_code == 200
    body = Envelope[InboxList].model_validate(response.json())
    assert [str(i.id) for i in body.data.inboxes] == [inbox(1), inbox(2), inbox(3)]
    first = body.data.inboxes[0]
    assert (first.phone_number, first.display_name) == ("+15551234001", "Acme Sales")
    assert str(first.tenant_id) == ACME
    assert body.data.meta.model_dump() == {
        "page": 1, "per_page": 50, "total": 3, "total_pages": 1, "has_more": False,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("operator", "expected"),
    [(op(4), [inbox(1)]), (op(3), [inbox(2), inbox(3)]), (op(10), [inbox(3)])],
)
async def test_list_is_open_to_every_role_and_shows_only_own_subscriptions(
    client: httpx.AsyncClient, operator: str, expected: list[str]
) -> None:
    response = await client.get(BASE, headers=as_(operator))
    assert response.status_code == 200
    data = Envelope[InboxList].model_validate(response.json()).data
    assert [str(i.id) for i in data.inboxes] == expected
    assert data.meta.total == len(expected)


async def test_list_orders_by_subscription_time(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    await db.execute(
        "UPDATE operator_inbox_subscriptions SET created_at = now() + interval '1 minute' "
        "WHERE operator_id = $1 AND inbox_id = $2",
        UUID(ADMIN),
        UUID(inbox(1)),
    )
    response = await client.get(BASE, headers=as_(ADMIN))
    data = Envelope[InboxList].model_validate(response.json()).data
    assert [str(i.id) for i in data.inboxes] == [inbox(2), inbox(3), inbox(1)]


async def test_list_never_shows_another_tenants_inbox(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    # A subscription across tenants cannot be made through the API, nor stored: its one
    # tenant_id must be both the operator's and the inbox's (composite foreign keys).
    for tenant in (ACME, TECHSTART):
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await db.execute(
                "INSERT INTO operator_inbox_subscriptions (tenant_id, operator_id, inbox_id) "
                "VALUES ($1, $2, $3)",
                UUID(tenant), UUID(ADMIN), UUID(inbox(4)),
            )  # fmt: skip
    response = await client.get(BASE, headers=as_(ADMIN))
    data = Envelope[InboxList].model_validate(response.json()).data
    assert inbox(4) not in [str(i.id) for i in data.inboxes]
    assert data.meta.total == 3
    techstart = await client.get(BASE, headers=as_(TS_ADMIN, TECHSTART))
    ts_data = Envelope[InboxList].model_validate(techstart.json()).data
    assert [str(i.id) for i in ts_data.inboxes] == [inbox(4), inbox(5)]


@pytest.mark.parametrize(
    ("query", "ids", "meta"),
    [
        ("?per_page=2", [1, 2], (1, 2, 3, 2, True)),
        ("?per_page=2&page=2", [3], (2, 2, 3, 2, False)),
        ("?per_page=2&page=3", [], (3, 2, 3, 2, False)),
        ("?page=5", [], (5, 50, 3, 1, False)),
        ("?per_page=1&page=2", [2], (2, 1, 3, 3, True)),
        ("?per_page=500", [1, 2, 3], (1, 100, 3, 1, False)),
        ("?per_page=0", [1, 2, 3], (1, 50, 3, 1, False)),
        ("?per_page=-3", [1, 2, 3], (1, 50, 3, 1, False)),
        ("?per_page=abc&page=xyz", [1, 2, 3], (1, 50, 3, 1, False)),
        ("?page=0", [1, 2, 3], (1, 50, 3, 1, False)),
        ("?page=99999999999999999999999", [], (2**31 - 1, 50, 3, 1, False)),
    ],
)
async def test_list_pagination_slices_and_reports_the_total(
    client: httpx.AsyncClient,
    query: str,
    ids: list[int],
    meta: tuple[int, int, int, int, bool],
) -> None:
    response = await client.get(BASE + query, headers=as_(ADMIN))
    assert response.status_code == 200
    data = Envelope[InboxList].model_validate(response.json()).data
    assert [str(i.id) for i in data.inboxes] == [inbox(n) for n in ids]
    m = data.meta
    assert (m.page, m.per_page, m.total, m.total_pages, m.has_more) == meta


async def test_list_with_no_subscriptions_is_empty(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    await db.execute(
        "DELETE FROM operator_inbox_subscriptions WHERE operator_id = $1", UUID(OPERATOR)
    )
    response = await client.get(BASE + "?page=2", headers=as_(OPERATOR))
    data = Envelope[InboxList].model_validate(response.json()).data
    assert data.inboxes == []
    assert (data.meta.total, data.meta.total_pages, data.meta.has_more) == (0, 0, False)


async def test_list_matches_with_a_trailing_slash(client: httpx.AsyncClient) -> None:
    response = await client.get(BASE + "/", headers=as_(OPERATOR))
    assert response.status_code == 200
    assert len(Envelope[InboxList].model_validate(response.json()).data.inboxes) == 1


async def test_list_needs_identity(client: httpx.AsyncClient) -> None:
    assert error_code(await client.get(BASE, headers={"X-Tenant-ID": ACME})) == (
        "OPERATOR_REQUIRED"
    )
    assert error_code(await client.get(BASE, headers={"X-Operator-ID": ADMIN})) == (
        "TENANT_REQUIRED"
    )
    other_tenant = await client.get(BASE, headers=as_(TS_ADMIN))
    assert other_tenant.status_code == 401
    assert error_code(other_tenant) == "UNAUTHORIZED"


# --- POST /inboxes --------------------------------------------------------------------------


async def test_create_stores_trimmed_values(client: httpx.AsyncClient, db: asyncpg.Pool) -> None:
    response = await client.post(
        BASE,
        headers=as_(MANAGER),
        json={"phone_number": "  +15551234999 ", "display_name": "  Acme Returns  "},
    )
    assert response.status_code == 201
    created = Envelope[InboxOut].model_validate(response.json()).data
    assert (created.phone_number, created.display_name) == ("+15551234999", "Acme Returns")
    assert str(created.tenant_id) == ACME
    assert created.id.version == 7
    row = await inbox_row(db, str(created.id))
    assert row is not None
    assert (row["tenant_id"], row["phone_number"], row["display_name"]) == (
        UUID(ACME),
        "+15551234999",
        "Acme Returns",
    )
    assert row["created_at"] == created.created_at


async def test_create_with_a_trailing_slash_and_ignores_unknown_fields(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        BASE + "/",
        headers=as_(ADMIN),
        json={"phone_number": "+15551234998", "display_name": "X", "color": "red"},
    )
    assert response.status_code == 201


@pytest.mark.parametrize(
    ("body", "failed_fields"),
    [
        ({"phone_number": "5551234", "display_name": "A"}, ["phone_number"]),
        ({"phone_number": "+0551234567", "display_name": "A"}, ["phone_number"]),
        ({"phone_number": "+123456", "display_name": "A"}, ["phone_number"]),
        ({"phone_number": "+1234567890123456", "display_name": "A"}, ["phone_number"]),
        ({"phone_number": "+1555 123 4001", "display_name": "A"}, ["phone_number"]),
        ({"phone_number": "   ", "display_name": "A"}, ["phone_number"]),
        ({"phone_number": "+15551234999", "display_name": "  "}, ["display_name"]),
        ({"phone_number": "+15551234999", "display_name": "x" * 256}, ["display_name"]),
        ({"display_name": "A"}, ["phone_number"]),
        ({"phone_number": None, "display_name": None}, ["phone_number", "display_name"]),
        ({}, ["phone_number", "display_name"]),
        ({"phone_number": "", "display_name": ""}, ["phone_number", "display_name"]),
    ],
)
async def test_create_reports_each_failed_rule(
    client: httpx.AsyncClient, db: asyncpg.Pool, body: dict[str, object], failed_fields: list[str]
) -> None:
    response = await client.post(BASE, headers=as_(MANAGER), json=body)
    assert response.status_code == 400
    error = ErrorEnvelope.model_validate(response.json()).error
    assert error.code == "VALIDATION_ERROR"
    assert error.details is not None
    assert [d.split(":")[0] for d in error.details] == failed_fields
    assert await db.fetchval("SELECT count(*) FROM inboxes") == 5


async def test_create_accepts_the_limits(client: httpx.AsyncClient) -> None:
    response = await client.post(
        BASE,
        headers=as_(MANAGER),
        json={"phone_number": "+123456789012345", "display_name": "é" * 255},
    )
    assert response.status_code == 201
    short = await client.post(
        BASE, headers=as_(MANAGER), json={"phone_number": "+1234567", "display_name": "S"}
    )
    assert short.status_code == 201


@pytest.mark.parametrize(
    "content",
    [
        b'{"phone_number": 15551234999, "display_name": "A"}',
        b'{"phone_number": "+15551234999", "display_name": ["A"]}',
        b"{not json",
        b"[]",
        b"",
    ],
)
async def test_create_with_a_malformed_body_is_a_bad_request(
    client: httpx.AsyncClient, content: bytes
) -> None:
    response = await client.post(BASE, headers=as_(MANAGER), content=content)
    assert response.status_code == 400
    assert error_code(response) == "BAD_REQUEST"


async def test_create_with_a_used_phone_number_is_a_conflict(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    response = await client.post(
        BASE, headers=as_(MANAGER), json={"phone_number": " +15551234001", "display_name": "Dup"}
    )
    assert response.status_code == 409
    assert error_code(response) == "CONFLICT"
    assert await db.fetchval("SELECT count(*) FROM inboxes WHERE tenant_id = $1", UUID(ACME)) == 3


async def test_the_same_phone_number_may_exist_in_another_tenant(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        BASE, headers=as_(MANAGER), json={"phone_number": "+15559876001", "display_name": "Ok"}
    )
    assert response.status_code == 201


async def test_concurrent_creates_with_one_phone_number_give_one_inbox(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    body = {"phone_number": "+15550000001", "display_name": "Race"}
    responses = await asyncio.gather(
        *(client.post(BASE, headers=as_(MANAGER), json=body) for _ in range(10))
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * 9
    assert {error_code(r) for r in responses if r.status_code == 409} == {"CONFLICT"}
    count = await db.fetchval(
        "SELECT count(*) FROM inboxes WHERE phone_number = $1", "+15550000001"
    )
    assert count == 1


async def test_create_needs_a_manager(client: httpx.AsyncClient, db: asyncpg.Pool) -> None:
    body = {"phone_number": "+15550000002", "display_name": "No"}
    response = await client.post(BASE, headers=as_(OPERATOR), json=body)
    assert response.status_code == 403
    assert error_code(response) == "FORBIDDEN"
    assert await db.fetchval("SELECT count(*) FROM inboxes") == 5


# --- GET /inboxes/{id} ----------------------------------------------------------------------


@pytest.mark.parametrize("caller", [MANAGER, ADMIN])
async def test_get_returns_the_inbox(client: httpx.AsyncClient, caller: str) -> None:
    response = await client.get(f"{BASE}/{inbox(2)}", headers=as_(caller))
    assert response.status_code == 200
    data = Envelope[InboxOut].model_validate(response.json()).data
    assert (str(data.id), data.phone_number, data.display_name) == (
        inbox(2),
        "+15551234002",
        "Acme Support",
    )


async def test_get_accepts_other_uuid_forms_and_a_trailing_slash(
    client: httpx.AsyncClient,
) -> None:
    for path in (
        f"{BASE}/{inbox(2)}/",
        f"{BASE}/{inbox(2).replace('-', '')}",
        f"{BASE}/{{{inbox(2)}}}",
        f"{BASE}/urn:uuid:{inbox(2).upper()}",
    ):
        response = await client.get(path, headers=as_(MANAGER))
        assert response.status_code == 200, path
        assert str(Envelope[InboxOut].model_validate(response.json()).data.id) == inbox(2)


@pytest.mark.parametrize(
    ("inbox_id", "status", "code"),
    [
        ("not-a-uuid", 400, "BAD_REQUEST"),
        ("20000000-0000-0000-0000-00000000000", 400, "BAD_REQUEST"),
        (inbox(99), 404, "INBOX_NOT_FOUND"),
        (inbox(4), 404, "INBOX_NOT_FOUND"),  # TechStart's
    ],
)
async def test_get_errors(client: httpx.AsyncClient, inbox_id: str, status: int, code: str) -> None:
    response = await client.get(f"{BASE}/{inbox_id}", headers=as_(MANAGER))
    assert response.status_code == status
    assert error_code(response) == code


async def test_other_tenants_inbox_looks_exactly_like_a_missing_one(
    client: httpx.AsyncClient,
) -> None:
    other = await client.get(f"{BASE}/{inbox(4)}", headers=as_(MANAGER))
    missing = await client.get(f"{BASE}/{inbox(99)}", headers=as_(MANAGER))
    assert other.json()["error"] == missing.json()["error"]


async def test_get_needs_a_manager(client: httpx.AsyncClient) -> None:
    response = await client.get(f"{BASE}/{inbox(1)}", headers=as_(OPERATOR))
    assert response.status_code == 403
    assert error_code(response) == "FORBIDDEN"


# --- PUT /inboxes/{id} ----------------------------------------------------------------------


async def test_update_changes_only_the_given_fields(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    before = await inbox_row(db, inbox(1))
    assert before is not None
    response = await client.put(
        f"{BASE}/{inbox(1)}", headers=as_(MANAGER), json={"display_name": " Sales EMEA "}
    )
    assert response.status_code == 200
    data = Envelope[InboxOut].model_validate(response.json()).data
    assert (data.phone_number, data.display_name) == ("+15551234001", "Sales EMEA")
    after = await inbox_row(db, inbox(1))
    assert after is not None
    assert (after["phone_number"], after["display_name"]) == ("+15551234001", "Sales EMEA")
    assert after["updated_at"] > before["updated_at"]
    assert after["created_at"] == before["created_at"]

    phone = await client.put(
        f"{BASE}/{inbox(1)}/", headers=as_(ADMIN), json={"phone_number": "+15551234777"}
    )
    assert phone.status_code == 200
    changed = await inbox_row(db, inbox(1))
    assert changed is not None
    assert (changed["phone_number"], changed["display_name"]) == ("+15551234777", "Sales EMEA")


async def test_update_with_an_empty_object_only_bumps_updated_at(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    before = await inbox_row(db, inbox(3))
    assert before is not None
    for body in ({}, {"phone_number": None, "display_name": None}):
        response = await client.put(f"{BASE}/{inbox(3)}", headers=as_(MANAGER), json=body)
        assert response.status_code == 200
    after = await inbox_row(db, inbox(3))
    assert after is not None
    assert (after["phone_number"], after["display_name"]) == (
        before["phone_number"],
        before["display_name"],
    )
    assert after["updated_at"] > before["updated_at"]


async def test_update_to_its_own_phone_number_is_fine(client: httpx.AsyncClient) -> None:
    response = await client.put(
        f"{BASE}/{inbox(1)}", headers=as_(MANAGER), json={"phone_number": "+15551234001"}
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("body", "failed_fields"),
    [
        ({"phone_number": ""}, ["phone_number"]),
        ({"display_name": ""}, ["display_name"]),
        ({"phone_number": "12345678"}, ["phone_number"]),
        ({"display_name": "y" * 256, "phone_number": "  "}, ["phone_number", "display_name"]),
    ],
)
async def test_update_validates_present_fields(
    client: httpx.AsyncClient, db: asyncpg.Pool, body: dict[str, object], failed_fields: list[str]
) -> None:
    response = await client.put(f"{BASE}/{inbox(1)}", headers=as_(MANAGER), json=body)
    assert response.status_code == 400
    error = ErrorEnvelope.model_validate(response.json()).error
    assert error.code == "VALIDATION_ERROR"
    assert error.details is not None
    assert [d.split(":")[0] for d in error.details] == failed_fields
    row = await inbox_row(db, inbox(1))
    assert row is not None
    assert (row["phone_number"], row["display_name"]) == ("+15551234001", "Acme Sales")


async def test_update_with_a_malformed_body_is_a_bad_request(client: httpx.AsyncClient) -> None:
    for content in (b'{"display_name": 5}', b"nope", b""):
        response = await client.put(f"{BASE}/{inbox(1)}", headers=as_(MANAGER), content=content)
        assert response.status_code == 400
        assert error_code(response) == "BAD_REQUEST"


async def test_update_to_another_inboxes_phone_number_is_a_conflict(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    response = await client.put(
        f"{BASE}/{inbox(1)}", headers=as_(MANAGER), json={"phone_number": "+15551234002"}
    )
    assert response.status_code == 409
    assert error_code(response) == "CONFLICT"
    row = await inbox_row(db, inbox(1))
    assert row is not None
    assert row["phone_number"] == "+15551234001"


async def test_concurrent_updates_to_one_phone_number_give_one_winner(
    client: httpx.AsyncClient,
) -> None:
    body = {"phone_number": "+15550000003"}
    responses = await asyncio.gather(
        *(client.put(f"{BASE}/{inbox(n)}", headers=as_(MANAGER), json=body) for n in (1, 2, 3))
    )
    assert sorted(r.status_code for r in responses) == [200, 409, 409]


@pytest.mark.parametrize(
    ("inbox_id", "body", "status", "code"),
    [
        ("xyz", {}, 400, "BAD_REQUEST"),
        ("xyz", {"phone_number": ""}, 400, "BAD_REQUEST"),  # path first
        (inbox(99), {}, 404, "INBOX_NOT_FOUND"),
        (inbox(4), {"display_name": "Hijacked"}, 404, "INBOX_NOT_FOUND"),
        (inbox(99), {"phone_number": ""}, 400, "VALIDATION_ERROR"),  # validation before 404
    ],
)
async def test_update_errors(
    client: httpx.AsyncClient,
    db: asyncpg.Pool,
    inbox_id: str,
    body: dict[str, object],
    status: int,
    code: str,
) -> None:
    response = await client.put(f"{BASE}/{inbox_id}", headers=as_(MANAGER), json=body)
    assert response.status_code == status
    assert error_code(response) == code
    techstart = await inbox_row(db, inbox(4))
    assert techstart is not None
    assert techstart["display_name"] == "TechStart General"


async def test_update_needs_a_manager(client: httpx.AsyncClient) -> None:
    response = await client.put(
        f"{BASE}/{inbox(1)}", headers=as_(OPERATOR), json={"display_name": "No"}
    )
    assert response.status_code == 403
    assert error_code(response) == "FORBIDDEN"


# --- DELETE /inboxes/{id} -------------------------------------------------------------------


async def test_delete_removes_the_inbox_and_what_belongs_to_it(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    response = await client.delete(f"{BASE}/{inbox(3)}", headers=as_(MANAGER))
    assert response.status_code == 204
    assert response.content == b""
    assert await inbox_row(db, inbox(3)) is None
    for table in ("conversation_refs", "labels", "operator_inbox_subscriptions"):
        count = await db.fetchval(
            f"SELECT count(*) FROM {table} WHERE inbox_id = $1", UUID(inbox(3))
        )
        assert count == 0, table
    assert await db.fetchval("SELECT count(*) FROM conversation_refs") == 50 - 8
    assert (
        await db.fetchval(
            "SELECT count(*) FROM grace_period_assignments WHERE conversation_id = $1",
            UUID(conv(34)),
        )
        == 0
    )


async def test_delete_with_a_trailing_slash(client: httpx.AsyncClient, db: asyncpg.Pool) -> None:
    response = await client.delete(f"{BASE}/{inbox(2)}/", headers=as_(ADMIN))
    assert response.status_code == 204
    assert await inbox_row(db, inbox(2)) is None


@pytest.mark.parametrize(
    ("inbox_id", "status", "code"),
    [
        ("1", 400, "BAD_REQUEST"),
        (inbox(99), 404, "INBOX_NOT_FOUND"),
        (inbox(5), 404, "INBOX_NOT_FOUND"),
    ],
)
async def test_delete_errors(
    client: httpx.AsyncClient, db: asyncpg.Pool, inbox_id: str, status: int, code: str
) -> None:
    response = await client.delete(f"{BASE}/{inbox_id}", headers=as_(MANAGER))
    assert response.status_code == status
    assert error_code(response) == code
    assert await db.fetchval("SELECT count(*) FROM inboxes") == 5


async def test_delete_twice_is_a_404(client: httpx.AsyncClient) -> None:
    assert (await client.delete(f"{BASE}/{inbox(1)}", headers=as_(MANAGER))).status_code == 204
    again = await client.delete(f"{BASE}/{inbox(1)}", headers=as_(MANAGER))
    assert again.status_code == 404


async def test_delete_needs_a_manager(client: httpx.AsyncClient, db: asyncpg.Pool) -> None:
    response = await client.delete(f"{BASE}/{inbox(1)}", headers=as_(OPERATOR))
    assert response.status_code == 403
    assert error_code(response) == "FORBIDDEN"
    assert await inbox_row(db, inbox(1)) is not None


async def test_unlisted_methods_are_405(client: httpx.AsyncClient) -> None:
    response = await client.patch(f"{BASE}/{inbox(1)}", headers=as_(ADMIN), json={})
    assert response.status_code == 405
    assert error_code(response) == "METHOD_NOT_ALLOWED"
