"""Operators: /api/v1/operators and /operators/{operator_id}/inboxes (rules in
docs/decisions.md#last-admin: no self-delete/demote, the last ADMIN stays, deletion re-queues
(docs/decisions.md#operator-deletion)).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from uuid import UUID

import asyncpg
import httpx
import pytest

from inbox_allocation.api.schemas.envelope import Envelope
from inbox_allocation.api.schemas.operators import OperatorList, OperatorOut
from inbox_allocation.api.schemas.subscriptions import SubscriptionList
from inbox_allocation.db.seed_ids import ACME, HOT_LEAD, TECHSTART, inbox
from inbox_allocation.db.seed_ids import conversation as conv
from inbox_allocation.db.seed_ids import operator as op
from tests.support.helpers import lock_waiters
from tests.support.http import error_code

BASE = "/api/v1/operators"


def sub(n: int) -> str:
    return f"40000000-0000-0000-0000-{n:012d}"


ADMIN, MANAGER, OPERATOR = op(1), op(2), op(4)
TS_ADMIN = op(11)
ACME_OPERATORS = [op(n) for n in range(1, 11)]


def as_(operator: str, tenant: str = ACME) -> dict[str, str]:
    return {"X-Tenant-ID": tenant, "X-Operator-ID": operator}


async def role_of(db: asyncpg.Pool, operator_id: str) -> str | None:
    role: str | None = await db.fetchval(
        "SELECT role::text FROM operators WHERE id = $1", UUID(operator_id)
    )
    return role


async def conversation(db: asyncpg.Pool, n: int) -> tuple[str, UUID | None]:
    row = await db.fetchrow(
        "SELECT state::text, assigned_operator_id FROM conversation_refs WHERE id = $1",
        UUID(conv(n)),
    )
    assert row is not None
    return row[0], row[1]


async def run_while_tenant_locked(
    db: asyncpg.Pool,
    requests: list[Awaitable[httpx.Response]],
    *,
    while_locked: str | None = None,
) -> list[httpx.Response]:
    """Hold Acme's tenant row locked until every request is waiting for it, then release.

    All requests have passed their identity and role checks by then, so they really race
    for the tenant lock. `while_locked` is SQL run (and committed) with the lock.
    """
    async with db.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        await conn.execute("SELECT 1 FROM tenants WHERE id = $1 FOR NO KEY UPDATE", UUID(ACME))
        tasks = [asyncio.ensure_future(request) for request in requests]
        for _ in range(1000):
            waiting = await lock_waiters(db)
            if waiting >= len(tasks):
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the requests never waited for the tenant lock")
        if while_locked:
            await conn.execute(while_locked)
        await transaction.commit()
    return list(await asyncio.gather(*tasks))


# --- GET /operators -------------------------------------------------------------------------


async def test_list_returns_the_tenants_operators_newest_first(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    response = await client.get(BASE, headers=as_(ADMIN))
    assert response.status_code == 200
    data = Envelope[OperatorList].model_validate(response.json()).data
    # The seed gives every operator the same created_at: the id breaks the tie, newest first.
    assert [str(o.id) for o in data.operators] == ACME_OPERATORS[::-1]
    assert {str(o.tenant_id) for o in data.operators} == {ACME}
    assert data.operators[-1].role == "ADMIN"
    assert data.meta.model_dump() == {
        "page": 1, "per_page": 50, "total": 10, "total_pages": 1, "has_more": False,
    }  # fmt: skip

    await db.execute(
        "UPDATE operators SET created_at = now() + interval '1 minute' WHERE id = $1", UUID(ADMIN)
    )
    newest = await client.get(BASE + "/", headers=as_(ADMIN))
    assert newest.status_code == 200
    first = Envelope[OperatorList].model_validate(newest.json()).data.operators[0]
    assert str(first.id) == ADMIN


@pytest.mark.parametrize(
    ("query", "ids", "meta"),
    [
        ("?per_page=4", [10, 9, 8, 7], (1, 4, 10, 3, True)),
        ("?per_page=4&page=3", [2, 1], (3, 4, 10, 3, False)),
        ("?per_page=4&page=4", [], (4, 4, 10, 3, False)),
        ("?per_page=1000", list(range(10, 0, -1)), (1, 100, 10, 1, False)),
        ("?per_page=x", list(range(10, 0, -1)), (1, 50, 10, 1, False)),
    ],
)
async def test_list_is_paginated(
    client: httpx.AsyncClient, query: str, ids: list[int], meta: tuple[int, int, int, int, bool]
) -> None:
    response = await client.get(BASE + query, headers=as_(ADMIN))
    data = Envelope[OperatorList].model_validate(response.json()).data
    assert [str(o.id) for o in data.operators] == [op(n) for n in ids]
    m = data.meta
    assert (m.page, m.per_page, m.total, m.total_pages, m.has_more) == meta


async def test_each_tenant_sees_only_its_operators(client: httpx.AsyncClient) -> None:
    response = await client.get(BASE, headers=as_(TS_ADMIN, TECHSTART))
    data = Envelope[OperatorList].model_validate(response.json()).data
    assert [str(o.id) for o in data.operators] == [op(n) for n in (15, 14, 13, 12, 11)]


# --- POST /operators ------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["OPERATOR", "MANAGER", "ADMIN"])
async def test_create_adds_an_offline_operator(
    client: httpx.AsyncClient, db: asyncpg.Pool, role: str
) -> None:
    response = await client.post(BASE, headers=as_(ADMIN), json={"role": role})
    assert response.status_code == 201
    data = Envelope[OperatorOut].model_validate(response.json()).data
    assert (data.role, str(data.tenant_id)) == (role, ACME)
    assert data.id.version == 7
    row = await db.fetchrow("SELECT * FROM operators WHERE id = $1", data.id)
    assert row is not None
    assert (row["tenant_id"], row["role"]) == (UUID(ACME), role)
    status = await db.fetchval(
        "SELECT status::text FROM operator_status WHERE operator_id = $1", data.id
    )
    assert status == "OFFLINE"
    # The new operator is immediately a valid caller of the tenant.
    own = await client.get("/api/v1/operator/status", headers=as_(str(data.id)))
    assert own.status_code == 200


async def test_create_with_a_trailing_slash(client: httpx.AsyncClient) -> None:
    response = await client.post(BASE + "/", headers=as_(ADMIN), json={"role": "OPERATOR"})
    assert response.status_code == 201


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (b'{"role": "admin"}', "VALIDATION_ERROR"),
        (b'{"role": "SUPERVISOR"}', "VALIDATION_ERROR"),
        (b'{"role": ""}', "VALIDATION_ERROR"),
        (b'{"role": null}', "VALIDATION_ERROR"),
        (b"{}", "VALIDATION_ERROR"),
        (b'{"role": 1}', "BAD_REQUEST"),
        (b'{"role": ["ADMIN"]}', "BAD_REQUEST"),
        (b"{", "BAD_REQUEST"),
        (b"", "BAD_REQUEST"),
    ],
)
async def test_create_validates_the_role(
    client: httpx.AsyncClient, db: asyncpg.Pool, content: bytes, code: str
) -> None:
    response = await client.post(BASE, headers=as_(ADMIN), content=content)
    assert response.status_code == 400
    assert error_code(response) == code
    assert await db.fetchval("SELECT count(*) FROM operators") == 15


# --- GET /operators/{id} --------------------------------------------------------------------


async def test_get_returns_the_operator(client: httpx.AsyncClient) -> None:
    for path in (f"{BASE}/{MANAGER}", f"{BASE}/{MANAGER}/"):
        response = await client.get(path, headers=as_(ADMIN))
        assert response.status_code == 200
        data = Envelope[OperatorOut].model_validate(response.json()).data
        assert (str(data.id), str(data.tenant_id), data.role) == (MANAGER, ACME, "MANAGER")


@pytest.mark.parametrize(
    ("operator_id", "status", "code"),
    [("me", 400, "BAD_REQUEST"), (op(99), 404, "NOT_FOUND"), (op(12), 404, "NOT_FOUND")],
)
async def test_get_errors(
    client: httpx.AsyncClient, operator_id: str, status: int, code: str
) -> None:
    response = await client.get(f"{BASE}/{operator_id}", headers=as_(ADMIN))
    assert response.status_code == status
    assert error_code(response) == code


# --- PUT /operators/{id} --------------------------------------------------------------------


async def test_update_changes_the_role(client: httpx.AsyncClient, db: asyncpg.Pool) -> None:
    before = await db.fetchval("SELECT updated_at FROM operators WHERE id = $1", UUID(OPERATOR))
    response = await client.put(f"{BASE}/{OPERATOR}", headers=as_(ADMIN), json={"role": "MANAGER"})
    assert response.status_code == 200
    data = Envelope[OperatorOut].model_validate(response.json()).data
    assert (str(data.id), data.role) == (OPERATOR, "MANAGER")
    assert await role_of(db, OPERATOR) == "MANAGER"
    after = await db.fetchval("SELECT updated_at FROM operators WHERE id = $1", UUID(OPERATOR))
    assert after > before
    promoted = await client.put(f"{BASE}/{MANAGER}/", headers=as_(ADMIN), json={"role": "ADMIN"})
    assert promoted.status_code == 200
    assert await role_of(db, MANAGER) == "ADMIN"


async def test_an_admin_cannot_demote_itself(client: httpx.AsyncClient, db: asyncpg.Pool) -> None:
    await db.execute("UPDATE operators SET role = 'ADMIN' WHERE id = $1", UUID(MANAGER))
    for role in ("MANAGER", "OPERATOR"):
        response = await client.put(f"{BASE}/{ADMIN}", headers=as_(ADMIN), json={"role": role})
        assert response.status_code == 409
        assert error_code(response) == "CANNOT_MODIFY_SELF"
    assert await role_of(db, ADMIN) == "ADMIN"
    same = await client.put(f"{BASE}/{ADMIN}", headers=as_(ADMIN), json={"role": "ADMIN"})
    assert same.status_code == 200


async def test_admins_can_demote_each_other_while_another_admin_remains(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    await db.execute("UPDATE operators SET role = 'ADMIN' WHERE id = $1", UUID(MANAGER))
    response = await client.put(f"{BASE}/{MANAGER}", headers=as_(ADMIN), json={"role": "OPERATOR"})
    assert response.status_code == 200
    assert await role_of(db, MANAGER) == "OPERATOR"


async def test_two_admins_demoting_each_other_leave_one_admin(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    await db.execute("UPDATE operators SET role = 'ADMIN' WHERE id = $1", UUID(MANAGER))
    responses = await run_while_tenant_locked(
        db,
        [
            client.put(f"{BASE}/{MANAGER}", headers=as_(ADMIN), json={"role": "MANAGER"}),
            client.put(f"{BASE}/{ADMIN}", headers=as_(MANAGER), json={"role": "MANAGER"}),
        ],
    )
    assert sorted(r.status_code for r in responses) == [200, 409]
    loser = next(r for r in responses if r.status_code == 409)
    assert error_code(loser) == "LAST_ADMIN"
    admins = await db.fetchval(
        "SELECT count(*) FROM operators WHERE tenant_id = $1 AND role = 'ADMIN'", UUID(ACME)
    )
    assert admins == 1


async def test_two_admins_demoting_each_other_without_coordination(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    await db.execute("UPDATE operators SET role = 'ADMIN' WHERE id = $1", UUID(MANAGER))
    responses = await asyncio.gather(
        client.put(f"{BASE}/{MANAGER}", headers=as_(ADMIN), json={"role": "MANAGER"}),
        client.put(f"{BASE}/{ADMIN}", headers=as_(MANAGER), json={"role": "MANAGER"}),
    )
    # Which one wins is up to timing; a loser that was demoted before its role check gets
    # 403, otherwise 409 LAST_ADMIN. Never both, never none.
    assert sorted(r.status_code for r in responses) in ([200, 403], [200, 409])
    admins = await db.fetchval(
        "SELECT count(*) FROM operators WHERE tenant_id = $1 AND role = 'ADMIN'", UUID(ACME)
    )
    assert admins == 1


async def test_a_caller_demoted_while_waiting_loses_its_admin_rights(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    await db.execute("UPDATE operators SET role = 'ADMIN' WHERE id = $1", UUID(MANAGER))
    (response,) = await run_while_tenant_locked(
        db,
        [client.put(f"{BASE}/{OPERATOR}", headers=as_(MANAGER), json={"role": "ADMIN"})],
        while_locked=f"UPDATE operators SET role = 'MANAGER' WHERE id = '{MANAGER}'",
    )
    assert response.status_code == 403
    assert error_code(response) == "FORBIDDEN"
    assert await role_of(db, OPERATOR) == "OPERATOR"


@pytest.mark.parametrize(
    ("operator_id", "body", "status", "code"),
    [
        ("x", {"role": "ADMIN"}, 400, "BAD_REQUEST"),
        (OPERATOR, {"role": "Manager"}, 400, "VALIDATION_ERROR"),
        (OPERATOR, {}, 400, "VALIDATION_ERROR"),
        (OPERATOR, {"role": True}, 400, "BAD_REQUEST"),
        (op(99), {"role": "ADMIN"}, 404, "NOT_FOUND"),
        (op(13), {"role": "ADMIN"}, 404, "NOT_FOUND"),  # TechStart's
        (op(11), {"role": "OPERATOR"}, 404, "NOT_FOUND"),  # TechStart's only admin
        (op(99), {"role": "nope"}, 400, "VALIDATION_ERROR"),  # validation before 404
    ],
)
async def test_update_errors_change_nothing(
    client: httpx.AsyncClient,
    db: asyncpg.Pool,
    operator_id: str,
    body: dict[str, object],
    status: int,
    code: str,
) -> None:
    response = await client.put(f"{BASE}/{operator_id}", headers=as_(ADMIN), json=body)
    assert response.status_code == status
    assert error_code(response) == code
    assert (await role_of(db, OPERATOR), await role_of(db, op(13)), await role_of(db, op(11))) == (
        "OPERATOR",
        "OPERATOR",
        "ADMIN",
    )


# --- DELETE /operators/{id} -----------------------------------------------------------------


async def test_delete_requeues_the_operators_conversations(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    response = await client.delete(f"{BASE}/{OPERATOR}", headers=as_(ADMIN))
    assert response.status_code == 204
    assert response.content == b""
    assert await role_of(db, OPERATOR) is None
    # Its ALLOCATED conversations are back in the queue, not orphaned.
    assert await conversation(db, 5) == ("QUEUED", None)
    assert await conversation(db, 7) == ("QUEUED", None)
    # Resolved ones keep their state (the assignee column is cleared by the schema).
    assert await conversation(db, 8) == ("RESOLVED", None)
    for table, column in (
        ("operator_status", "operator_id"),
        ("operator_inbox_subscriptions", "operator_id"),
        ("grace_period_assignments", "operator_id"),
    ):
        count = await db.fetchval(
            f"SELECT count(*) FROM {table} WHERE {column} = $1",
            UUID(OPERATOR),
        )
        assert count == 0, table
    assert (
        await db.fetchval(
            "SELECT count(*) FROM grace_period_assignments WHERE conversation_id = $1",
            UUID(conv(7)),
        )
        == 0
    )
    # Everybody else's conversations are untouched.
    assert await conversation(db, 6) == ("ALLOCATED", UUID(op(5)))
    assert (
        await db.fetchval("SELECT count(*) FROM conversation_refs WHERE state = 'ALLOCATED'") == 10
    )


async def test_delete_clears_the_operator_from_resolved_conversations_and_labels(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    """The foreign keys to the operator are NO ACTION (no ON DELETE SET NULL, which a
    distributed database refuses on tenant-keyed keys): the delete clears the references
    itself, keeps the rows, and leaves their updated_at alone (as SET NULL did)."""
    resolved = UUID(conv(8))
    assert await conversation(db, 8) == ("RESOLVED", UUID(OPERATOR))
    before = await db.fetchval("SELECT updated_at FROM conversation_refs WHERE id = $1", resolved)
    await db.execute(
        "UPDATE labels SET created_by = $1 WHERE id = $2",
        UUID(OPERATOR),
        UUID(HOT_LEAD),
    )
    response = await client.delete(f"{BASE}/{OPERATOR}", headers=as_(ADMIN))
    assert response.status_code == 204
    assert await conversation(db, 8) == ("RESOLVED", None)
    after = await db.fetchval("SELECT updated_at FROM conversation_refs WHERE id = $1", resolved)
    assert after == before
    label = await db.fetchrow(
        "SELECT name, created_by FROM labels WHERE id = '60000000-0000-0000-0000-000000000001'"
    )
    assert label is not None
    assert (label["name"], label["created_by"]) == ("Hot Lead", None)


async def test_delete_with_a_trailing_slash(client: httpx.AsyncClient, db: asyncpg.Pool) -> None:
    response = await client.delete(f"{BASE}/{MANAGER}/", headers=as_(ADMIN))
    assert response.status_code == 204
    assert await role_of(db, MANAGER) is None


async def test_an_admin_cannot_delete_itself(client: httpx.AsyncClient, db: asyncpg.Pool) -> None:
    await db.execute("UPDATE operators SET role = 'ADMIN' WHERE id = $1", UUID(MANAGER))
    response = await client.delete(f"{BASE}/{ADMIN}", headers=as_(ADMIN))
    assert response.status_code == 409
    assert error_code(response) == "CANNOT_MODIFY_SELF"
    assert await role_of(db, ADMIN) == "ADMIN"


async def test_an_admin_can_delete_another_admin(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    await db.execute("UPDATE operators SET role = 'ADMIN' WHERE id = $1", UUID(MANAGER))
    response = await client.delete(f"{BASE}/{MANAGER}", headers=as_(ADMIN))
    assert response.status_code == 204
    assert await role_of(db, MANAGER) is None


async def test_two_admins_deleting_each_other_leave_one_admin(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    await db.execute("UPDATE operators SET role = 'ADMIN' WHERE id = $1", UUID(MANAGER))
    responses = await run_while_tenant_locked(
        db,
        [
            client.delete(f"{BASE}/{MANAGER}", headers=as_(ADMIN)),
            client.delete(f"{BASE}/{ADMIN}", headers=as_(MANAGER)),
        ],
    )
    assert sorted(r.status_code for r in responses) == [204, 409]
    loser = next(r for r in responses if r.status_code == 409)
    assert error_code(loser) == "LAST_ADMIN"
    admins = await db.fetchval(
        "SELECT count(*) FROM operators WHERE tenant_id = $1 AND role = 'ADMIN'", UUID(ACME)
    )
    assert admins == 1


async def test_delete_and_demote_of_the_other_admin_race_safely(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    await db.execute("UPDATE operators SET role = 'ADMIN' WHERE id = $1", UUID(MANAGER))
    responses = await run_while_tenant_locked(
        db,
        [
            client.delete(f"{BASE}/{MANAGER}", headers=as_(ADMIN)),
            client.put(f"{BASE}/{ADMIN}", headers=as_(MANAGER), json={"role": "OPERATOR"}),
        ],
    )
    assert sorted(r.status_code for r in responses) in ([200, 409], [204, 409])
    assert (
        await db.fetchval(
            "SELECT count(*) FROM operators WHERE tenant_id = $1 AND role = 'ADMIN'", UUID(ACME)
        )
        == 1
    )


@pytest.mark.parametrize(
    ("operator_id", "status", "code"),
    [("x", 400, "BAD_REQUEST"), (op(99), 404, "NOT_FOUND"), (op(14), 404, "NOT_FOUND")],
)
async def test_delete_errors_change_nothing(
    client: httpx.AsyncClient, db: asyncpg.Pool, operator_id: str, status: int, code: str
) -> None:
    response = await client.delete(f"{BASE}/{operator_id}", headers=as_(ADMIN))
    assert response.status_code == status
    assert error_code(response) == code
    assert await db.fetchval("SELECT count(*) FROM operators") == 15
    assert await conversation(db, 43) == ("ALLOCATED", UUID(op(14)))


# --- GET /operators/{operator_id}/inboxes ---------------------------------------------------


async def test_operator_subscriptions(client: httpx.AsyncClient) -> None:
    response = await client.get(f"{BASE}/{ADMIN}/inboxes", headers=as_(ADMIN))
    assert response.status_code == 200
    data = Envelope[SubscriptionList].model_validate(response.json()).data
    assert [str(s.id) for s in data.subscriptions] == [sub(1), sub(2), sub(3)]
    assert [str(s.inbox_id) for s in data.subscriptions] == [inbox(1), inbox(2), inbox(3)]
    assert {str(s.operator_id) for s in data.subscriptions} == {ADMIN}
    assert data.meta.total == 3
    paged = await client.get(f"{BASE}/{ADMIN}/inboxes?per_page=2&page=2", headers=as_(ADMIN))
    paged_data = Envelope[SubscriptionList].model_validate(paged.json()).data
    assert [str(s.id) for s in paged_data.subscriptions] == [sub(3)]
    assert (paged_data.meta.total, paged_data.meta.total_pages, paged_data.meta.has_more) == (
        3,
        2,
        False,
    )


async def test_operator_without_subscriptions_has_an_empty_list(
    client: httpx.AsyncClient,
) -> None:
    created = await client.post(BASE, headers=as_(ADMIN), json={"role": "OPERATOR"})
    new_id = created.json()["data"]["id"]
    response = await client.get(f"{BASE}/{new_id}/inboxes", headers=as_(ADMIN))
    data = Envelope[SubscriptionList].model_validate(response.json()).data
    assert (data.subscriptions, data.meta.total) == ([], 0)


@pytest.mark.parametrize(
    ("operator_id", "status", "code"),
    [("x", 400, "BAD_REQUEST"), (op(99), 404, "NOT_FOUND"), (op(14), 404, "NOT_FOUND")],
)
async def test_operator_subscriptions_errors(
    client: httpx.AsyncClient, operator_id: str, status: int, code: str
) -> None:
    response = await client.get(f"{BASE}/{operator_id}/inboxes", headers=as_(ADMIN))
    assert response.status_code == status
    assert error_code(response) == code


# --- role guard -----------------------------------------------------------------------------


@pytest.mark.parametrize("caller", [MANAGER, OPERATOR])
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", BASE, None),
        ("POST", BASE, {"role": "OPERATOR"}),
        ("GET", f"{BASE}/{op(5)}", None),
        ("PUT", f"{BASE}/{op(5)}", {"role": "ADMIN"}),
        ("DELETE", f"{BASE}/{op(5)}", None),
        ("GET", f"{BASE}/{op(5)}/inboxes", None),
    ],
)
async def test_every_operator_route_needs_an_admin(
    client: httpx.AsyncClient,
    db: asyncpg.Pool,
    caller: str,
    method: str,
    path: str,
    body: dict[str, str] | None,
) -> None:
    response = await client.request(method, path, headers=as_(caller), json=body)
    assert response.status_code == 403
    assert error_code(response) == "FORBIDDEN"
    assert await db.fetchval("SELECT count(*) FROM operators") == 15
    assert await role_of(db, op(5)) == "OPERATOR"
