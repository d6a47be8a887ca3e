"""On a Citus cluster, every statement the service runs for a request goes to one shard.

The service names one tenant in every request, and each tenant's rows live in one shard
group, so each statement must be a single-task ("router") query: that is what lets
throughput grow with the number of workers. Citus can refuse anything else on a session:
with `citus.multi_task_query_log_level = error`, a statement that would fan out to several
shards fails with "multi-task query about to be executed" instead of running.

These tests run a second copy of the app whose connections carry that setting, send every
API route's valid request (tests/support/route_catalog.py, once per role it serves) and run each
background worker once. A statement that stops routing to one shard turns its request into
a 500 and fails here. (Citus does not flag a multi-row INSERT whose rows land on different
shards; the service never inserts rows of two tenants in one statement.)
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import httpx
import pytest
import pytest_asyncio

from inbox_allocation.app import create_app
from inbox_allocation.config import Settings
from inbox_allocation.db.pool import Database, create_pool
from inbox_allocation.db.seed_ids import ACME_OP4
from inbox_allocation.services.grace import GraceSweeper
from inbox_allocation.services.idempotency import IdempotencyStore
from inbox_allocation.services.queue_aging import QueueAging
from tests.support.http import headers
from tests.support.route_catalog import (
    ACME_CALLER,
    MUTATING_METHODS,
    ROLES,
    ROUTES,
    Role,
    Route,
    outcome,
    send,
)

pytestmark = pytest.mark.citus_only(reason="routing to one shard is a property of Citus")

ONE_SHARD_ONLY = "citus.multi_task_query_log_level=error"


@pytest.fixture(scope="module")
def guarded_settings(dsn: str) -> Settings:
    """The test settings on connections that refuse any statement on more than one shard
    (asyncpg passes the URL's unknown query parameters as session settings)."""
    separator = "&" if "?" in dsn else "?"
    return Settings(
        database_url=f"{dsn}{separator}{ONE_SHARD_ONLY}",
        db_min_conns=1,
        db_max_conns=4,
        # The workers run explicitly below, not on their schedule.
        grace_period_interval=timedelta(hours=1),
        queue_aging_interval=timedelta(hours=1),
        idempotency_cleanup_interval=timedelta(hours=1),
        log_level="warning",
    )


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def guarded_client(guarded_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    application = create_app(guarded_settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def guarded_db(guarded_settings: Settings) -> AsyncIterator[Database]:
    """What the background workers get, without the app (whose own start-up runs of the
    workers would race with the rows a test arranges)."""
    pool = await create_pool(guarded_settings)
    try:
        yield Database(pool)
    finally:
        await pool.close()


async def test_the_guard_refuses_a_statement_on_every_shard(guarded_db: Database) -> None:
    """Without this, the tests below could not fail: an all-tenant scan must be refused."""
    with pytest.raises(asyncpg.PostgresError, match="multi-task query"):
        await guarded_db.pool.fetchval("SELECT count(*) FROM conversation_refs")


SERVED = [(route, role) for route in ROUTES for role in ROLES if role not in route.refused]


@pytest.mark.parametrize(
    ("route", "role"), SERVED, ids=[f"{route.id} as {role}" for route, role in SERVED]
)
async def test_every_route_runs_on_one_shard(
    guarded_client: httpx.AsyncClient, route: Route, role: Role
) -> None:
    key = str(uuid.uuid4()) if route.call.method in MUTATING_METHODS else None
    response = await send(
        guarded_client, route.call, operator=ACME_CALLER[role], idempotency_key=key
    )
    assert response.status_code == route.ok_status, (
        f"{role}: {route.call.describe()} → {outcome(response)}"
    )


async def test_background_workers_run_on_one_shard(
    client: httpx.AsyncClient, db: asyncpg.Pool, guarded_db: Database
) -> None:
    # Give each worker something to do: expired grace periods, queued rows past the aging
    # threshold that are not flagged yet, and an expired idempotency key.
    response = await client.put(
        "/api/v1/operator/status",
        headers={**headers(ACME_OP4), "Idempotency-Key": str(uuid.uuid4())},
        json={"status": "OFFLINE"},
    )
    assert response.status_code == 200, outcome(response)
    await db.execute("UPDATE grace_period_assignments SET expires_at = now() - interval '1 s'")
    await db.execute(
        "UPDATE conversation_refs SET last_message_at = now() - interval '30 hours' "
        "WHERE state = 'QUEUED'"
    )
    await db.execute("UPDATE conversation_refs SET aged = false")  # as if crossed since
    await db.execute("UPDATE idempotency_keys SET expires_at = now() - interval '1 s'")

    assert (await GraceSweeper(guarded_db, batch_size=1).sweep()).released >= 2
    assert await QueueAging(guarded_db).sweep() >= 1
    assert await IdempotencyStore(guarded_db, timedelta(hours=24)).delete_expired() >= 1
