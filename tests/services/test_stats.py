"""GET /api/v1/stats: per-inbox queue statistics of the caller's tenant, in one query."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from inbox_allocation.api.schemas.envelope import Envelope, ErrorEnvelope
from inbox_allocation.api.schemas.stats import QueueStats
from inbox_allocation.db.seed_ids import (
    ACME,
    ACME_ADMIN,
    ACME_MANAGER,
    ACME_OP4,
    INBOX_BILLING,
    INBOX_SALES,
    INBOX_SUPPORT,
    TECH_ADMIN,
)
from inbox_allocation.services.stats import StatsService
from inbox_allocation.sql import stats as sql
from tests.support.http import headers


@dataclass
class StatsTenant:
    """A tenant built for these tests, with numbers known in advance."""

    tenant: str
    admin: str
    manager: str
    operator: str
    inbox_a: str
    inbox_b: str
    inbox_c: str


def new_id() -> str:
    return str(uuid.uuid4())


@pytest.fixture
async def stats_tenant(db: asyncpg.Pool) -> StatsTenant:
    """Inbox A: 3 queued (oldest 10 min), 2 allocated, 1 resolved; subscribers: two
    AVAILABLE, one OFFLINE. Inbox B: 1 allocated, nothing queued; subscribers: one AVAILABLE
    (also on A) and one without a status row. Inbox C: nothing at all."""
    t = StatsTenant(*(new_id() for _ in range(7)))
    op_offline, op_available, op_no_status = new_id(), new_id(), new_id()
    async with db.acquire() as conn, conn.transaction():
        await conn.execute("INSERT INTO tenants (id, name) VALUES ($1, $2)", t.tenant, t.tenant)
        for number, inbox in enumerate((t.inbox_a, t.inbox_b, t.inbox_c)):
            await conn.execute(
                "INSERT INTO inboxes (id, tenant_id, phone_number, display_name, created_at) "
                "VALUES ($1, $2, $3, $4, now() - make_interval(mins => 10 - $5::int))",
                inbox, t.tenant, f"+1555000000{number}", f"Inbox {number}", number,
            )  # fmt: skip
        roles = {
            t.admin: ("ADMIN", "AVAILABLE"),
            t.manager: ("MANAGER", "OFFLINE"),
            t.operator: ("OPERATOR", "AVAILABLE"),
            op_offline: ("OPERATOR", "OFFLINE"),
            op_available: ("OPERATOR", "AVAILABLE"),
            op_no_status: ("OPERATOR", None),
        }
        for operator, (role, status) in roles.items():
            await conn.execute(
                "INSERT INTO operators (id, tenant_id, role) VALUES ($1, $2, $3)",
                operator, t.tenant, role,
            )  # fmt: skip
            if status is not None:
                await conn.execute(
                    "INSERT INTO operator_status (tenant_id, operator_id, status) "
                    "SELECT tenant_id, id, $2 FROM operators WHERE id = $1",
                    operator, status,
                )  # fmt: skip
        subscriptions = [
            (t.operator, t.inbox_a), (t.operator, t.inbox_b), (op_offline, t.inbox_a),
            (op_available, t.inbox_a), (op_no_status, t.inbox_b),
        ]  # fmt: skip
        for operator, inbox in subscriptions:
            await conn.execute(
                "INSERT INTO operator_inbox_subscriptions (tenant_id, operator_id, inbox_id) "
                "SELECT tenant_id, id, $2 FROM operators WHERE id = $1",
                operator, inbox,
            )  # fmt: skip
        conversations = [
            (t.inbox_a, "QUEUED", None, "10 minutes"),
            (t.inbox_a, "QUEUED", None, "5 minutes"),
            (t.inbox_a, "QUEUED", None, "1 minute"),
            (t.inbox_a, "ALLOCATED", t.operator, "1 hour"),  # older, but not queued
            (t.inbox_a, "ALLOCATED", op_offline, "2 minutes"),
            (t.inbox_a, "RESOLVED", None, "2 hours"),
            (t.inbox_b, "ALLOCATED", t.operator, "30 seconds"),
        ]
        for inbox, state, assignee, age in conversations:
            await conn.execute(
                "INSERT INTO conversation_refs (tenant_id, inbox_id, external_conversation_id, "
                "customer_phone_number, state, assigned_operator_id, last_message_at, "
                "message_count) VALUES ($1, $2, $3, '+15550001111', $4, $5, "
                "now() - $6::text::interval, 1)",
                t.tenant, inbox, new_id(), state, assignee, age,
            )  # fmt: skip
    return t


async def get_stats(client: httpx.AsyncClient, operator: str, tenant: str) -> httpx.Response:
    return await client.get("/api/v1/stats", headers=headers(operator, tenant))


async def test_numbers_for_known_data(client: httpx.AsyncClient, stats_tenant: StatsTenant) -> None:
    t = stats_tenant
    response = await get_stats(client, t.admin, t.tenant)
    assert response.status_code == 200
    body = Envelope[QueueStats].model_validate(response.json())
    by_inbox = {str(item.inbox_id): item for item in body.data.inboxes}
    # Every inbox, in creation order, idle ones included.
    assert list(by_inbox) == [t.inbox_a, t.inbox_b, t.inbox_c]

    a, b, c = by_inbox[t.inbox_a], by_inbox[t.inbox_b], by_inbox[t.inbox_c]
    assert (a.queued, a.allocated, a.available_operators) == (3, 2, 2)
    assert a.oldest_queued_wait_seconds is not None
    assert 600 <= a.oldest_queued_wait_seconds < 600 + 30  # the 10-minute one
    assert (b.queued, b.allocated, b.available_operators) == (0, 1, 1)
    assert b.oldest_queued_wait_seconds is None
    assert (c.queued, c.allocated, c.available_operators) == (0, 0, 0)
    assert c.oldest_queued_wait_seconds is None
    # The raw JSON: a null, and a number (float seconds, millisecond precision).
    raw = {item["inbox_id"]: item for item in response.json()["data"]["inboxes"]}
    assert raw[t.inbox_b]["oldest_queued_wait_seconds"] is None
    wait = raw[t.inbox_a]["oldest_queued_wait_seconds"]
    assert isinstance(wait, float)
    assert round(wait, 3) == wait


async def test_status_changes_show_in_available_operators(
    client: httpx.AsyncClient, stats_tenant: StatsTenant
) -> None:
    t = stats_tenant
    offline = await client.put(
        "/api/v1/operator/status", headers=headers(t.operator, t.tenant), json={"status": "OFFLINE"}
    )
    assert offline.status_code == 200
    response = await get_stats(client, t.manager, t.tenant)
    data = {item["inbox_id"]: item for item in response.json()["data"]["inboxes"]}
    assert data[t.inbox_a]["available_operators"] == 1
    assert data[t.inbox_b]["available_operators"] == 0


async def test_a_message_from_the_future_never_waits_negatively(
    client: httpx.AsyncClient, db: asyncpg.Pool, stats_tenant: StatsTenant
) -> None:
    t = stats_tenant
    await db.execute(
        "UPDATE conversation_refs SET last_message_at = now() + interval '4 minutes' "
        "WHERE tenant_id = $1",
        uuid.UUID(t.tenant),
    )
    response = await get_stats(client, t.admin, t.tenant)
    data = {item["inbox_id"]: item for item in response.json()["data"]["inboxes"]}
    assert data[t.inbox_a]["oldest_queued_wait_seconds"] == 0


async def test_seed_tenant_matches_simple_per_inbox_counts(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    response = await get_stats(client, ACME_MANAGER, ACME)
    assert response.status_code == 200
    items = Envelope[QueueStats].model_validate(response.json()).data.inboxes
    # Only the tenant's own inboxes (TechStart's are not listed).
    assert [str(item.inbox_id) for item in items] == [INBOX_SALES, INBOX_SUPPORT, INBOX_BILLING]
    for item in items:
        expected = await db.fetchrow(
            """
            SELECT
              (SELECT count(*) FROM conversation_refs
               WHERE inbox_id = $1 AND state = 'QUEUED') AS queued,
              (SELECT count(*) FROM conversation_refs
               WHERE inbox_id = $1 AND state = 'ALLOCATED') AS allocated,
              (SELECT extract(epoch FROM now() - min(last_message_at))::float8
               FROM conversation_refs WHERE inbox_id = $1 AND state = 'QUEUED') AS wait,
              (SELECT count(*) FROM operator_inbox_subscriptions s
               JOIN operator_status st
                 ON st.tenant_id = s.tenant_id AND st.operator_id = s.operator_id
               WHERE s.inbox_id = $1 AND st.status = 'AVAILABLE') AS available
            """,
            item.inbox_id,
        )
        assert expected is not None
        assert (item.queued, item.allocated, item.available_operators) == (
            expected["queued"],
            expected["allocated"],
            expected["available"],
        )
        if expected["wait"] is None:
            assert item.oldest_queued_wait_seconds is None
        else:
            assert item.oldest_queued_wait_seconds == pytest.approx(expected["wait"], abs=5)


async def test_operators_are_refused_managers_and_admins_allowed(
    client: httpx.AsyncClient,
) -> None:
    refused = await get_stats(client, ACME_OP4, ACME)
    assert refused.status_code == 403
    assert ErrorEnvelope.model_validate(refused.json()).error.code == "FORBIDDEN"
    assert (await get_stats(client, ACME_MANAGER, ACME)).status_code == 200
    assert (await get_stats(client, ACME_ADMIN, ACME)).status_code == 200


async def test_identity_is_checked(client: httpx.AsyncClient) -> None:
    missing = await client.get("/api/v1/stats")
    assert (missing.status_code, missing.json()["error"]["code"]) == (400, "TENANT_REQUIRED")
    foreign = await get_stats(client, TECH_ADMIN, ACME)  # TechStart's admin, Acme's header
    assert (foreign.status_code, foreign.json()["error"]["code"]) == (401, "UNAUTHORIZED")


class CountingDatabase:
    """Counts the statements a service sends (every way the Database offers)."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.statements = 0

    async def fetch(self, query: str, *args: Any) -> Any:
        self.statements += 1
        return await self.real.fetch(query, *args)

    async def fetchrow(self, query: str, *args: Any) -> Any:
        self.statements += 1
        return await self.real.fetchrow(query, *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        self.statements += 1
        return await self.real.fetchval(query, *args)

    def connection(self) -> Any:
        raise AssertionError("stats should not need a connection of its own")

    def transaction(self) -> Any:
        raise AssertionError("stats should not need a transaction")


async def test_one_query_whatever_the_number_of_inboxes(
    app: FastAPI, db: asyncpg.Pool, stats_tenant: StatsTenant
) -> None:
    for number in range(20):  # many more inboxes: still one statement
        await db.execute(
            "INSERT INTO inboxes (tenant_id, phone_number, display_name) VALUES ($1, $2, 'x')",
            uuid.UUID(stats_tenant.tenant),
            f"+1555999{number:04d}",
        )
    counting = CountingDatabase(app.state.db)
    rows = await StatsService(counting).inbox_stats(  # type: ignore[arg-type]
        tenant_id=uuid.UUID(stats_tenant.tenant)
    )
    assert len(rows) == 23
    assert counting.statements == 1


async def test_the_statement_uses_the_tenant_state_index(db: asyncpg.Pool) -> None:
    async with db.acquire() as conn, conn.transaction():
        # On Citus the shard's plan is made on a worker: send it the setting too.
        await conn.execute("SET LOCAL citus.propagate_set_commands = 'local'")
        await conn.execute("SET LOCAL enable_seqscan = off")  # tiny tables: force the choice
        plan = await conn.fetch(f"EXPLAIN {sql.INBOX_STATS}", uuid.UUID(ACME))
    text = "\n".join(row[0] for row in plan)
    assert "conversation_refs" in text
    assert "Seq Scan on conversation_refs" not in text
