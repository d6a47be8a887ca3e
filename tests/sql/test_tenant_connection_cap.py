"""One tenant cannot take the whole pool: its requests hold at most DB_MAX_CONNS_PER_TENANT
connections at once; over that they wait briefly, then get 503 with Retry-After, while other
tenants keep being answered."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import httpx
import pytest_asyncio

from inbox_allocation.app import create_app
from inbox_allocation.config import Settings, load_settings
from inbox_allocation.db.seed_ids import ACME, ACME_OP4, ACME_OP5, ACME_OP7, TECH_OP14, TECHSTART
from tests.support.http import headers


async def _until_waiting_for_locks(db: asyncpg.Pool, count: int) -> None:
    for _ in range(500):
        waiting = await db.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND application_name = 'inbox-allocation'"
        )
        if waiting >= count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"fewer than {count} service backends wait for a lock")


@pytest_asyncio.fixture(loop_scope="session")
async def capped(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """Pool of 4, at most 2 per tenant; lock waits long enough to keep two requests busy."""
    capped_settings = Settings.model_validate({
        **settings.model_dump(), "db_min_conns": 1, "db_max_conns": 4,
        "db_max_conns_per_tenant": 2, "db_lock_timeout": timedelta(seconds=15),
    })  # fmt: skip
    application = create_app(capped_settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            yield http


async def test_a_tenant_over_its_share_gets_503_and_others_keep_answering(
    capped: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    async with db.acquire() as holder, holder.transaction():
        # Two allocations of Acme wait for their operators' status rows: two connections.
        await holder.execute(
            f"SELECT 1 FROM operator_status WHERE tenant_id = '{ACME}'"
            " AND operator_id = ANY($1::uuid[]) FOR UPDATE",
            [uuid.UUID(ACME_OP4), uuid.UUID(ACME_OP5)],
        )
        busy = [
            asyncio.create_task(capped.post("/api/v1/allocate", headers=headers(operator)))
            for operator in (ACME_OP4, ACME_OP5)
        ]
        await _until_waiting_for_locks(db, 2)
        third = await capped.get("/api/v1/operator/status", headers=headers(ACME_OP7))
        other = await capped.get("/api/v1/operator/status", headers=headers(TECH_OP14, TECHSTART))
    assert (third.status_code, third.json()["error"]["code"]) == (503, "DB_UNAVAILABLE")
    assert third.headers["Retry-After"] == "1"
    assert other.status_code == 200
    assert [r.status_code for r in await asyncio.gather(*busy)] == [200, 200]
    again = await capped.get("/api/v1/operator/status", headers=headers(ACME_OP7, ACME))
    assert again.status_code == 200  # the share is free again


def test_the_default_share_leaves_room_for_other_tenants() -> None:
    assert load_settings(db_max_conns=25).tenant_connection_limit == 20
    assert load_settings(db_max_conns=1, db_min_conns=1).tenant_connection_limit == 1
    assert load_settings(db_max_conns=25, db_max_conns_per_tenant=5).tenant_connection_limit == 5
