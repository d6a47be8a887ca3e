"""Database conditions of the moment never answer 500.

- A deadlock (PostgreSQL aborts one side) is retried once on a fresh transaction; a second one
  is answered 503 DB_UNAVAILABLE with Retry-After: 1.
- A row lock held past `lock_timeout` fails the waiting request with 503 instead of holding
  it; a read-only server (a standby after a failover) refuses writes with 503.
- A pooled connection whose backend was terminated while idle is never used for a statement.

Deadlocks are forced between a real connection of the test and the service's own statements
(the request runs /resolve: its holder's status row FOR SHARE, then the conversation row; the
test takes them the other way round).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from inbox_allocation.app import create_app
from inbox_allocation.config import Settings
from inbox_allocation.db.pool import Database, create_pool
from inbox_allocation.db.seed_ids import ACME, ACME_OP4, conversation
from tests.support.http import headers
from tests.support.pg_proxy import PgProxy

CONVERSATION_5 = uuid.UUID(conversation(5))  # ALLOCATED to operator 04
LOCK_STATUS = (
    f"SELECT 1 FROM operator_status WHERE tenant_id = '{ACME}' AND operator_id = $1 FOR UPDATE"
)
LOCK_CONVERSATION = (
    f"SELECT 1 FROM conversation_refs WHERE tenant_id = '{ACME}' AND id = $1 FOR UPDATE"
)


async def _waiting_backend(db: asyncpg.Pool, fragment: str) -> int:
    """The pid of the service backend waiting for a lock in a statement containing `fragment`."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pid = await db.fetchval(
            "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND application_name = 'inbox-allocation' AND query LIKE '%' || $1 || '%'",
            fragment,
        )
        if pid is not None:
            return int(pid)
        await asyncio.sleep(0.02)
    activity = await db.fetch(
        "SELECT pid, state, wait_event_type, wait_event, left(query, 60) AS query "
        "FROM pg_stat_activity WHERE application_name = 'inbox-allocation'"
    )
    raise AssertionError(f"no service backend waits for a lock in {fragment!r}: {activity}")


async def _deadlocks(db: asyncpg.Pool, at_least: int = 0) -> int:
    """The database's deadlock counter, once it reaches `at_least` (within 5 s). Backends
    report their statistics in batches, so a deadlock of an earlier test can still arrive
    while this one runs: the tests check that their own deadlocks were counted (>=), and the
    response shows how many the request met."""
    for _ in range(50):
        count = int(
            await db.fetchval(
                "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
            )
        )
        if count >= at_least:
            return count
        await asyncio.sleep(0.1)
    return count


async def _force_deadlocks(db: asyncpg.Pool, times: int) -> None:
    """Hold conversation 5; each time the request (holding operator 04's status row FOR
    SHARE) waits for it, ask for that status row FOR UPDATE in a savepoint: a cycle. The
    holder never detects it (its deadlock_timeout is long), so the request is the side
    PostgreSQL aborts; rolling back to the savepoint lets the retry take the status row again
    and wait for the conversation, which is free once the holder commits."""
    async with db.acquire() as holder, holder.transaction():
        await holder.execute("SET LOCAL deadlock_timeout = '30s'")
        await holder.execute(LOCK_CONVERSATION, CONVERSATION_5)
        for _ in range(times):
            await _waiting_backend(db, "FROM conversation_refs")
            await holder.execute("SAVEPOINT cycle")
            await holder.execute(LOCK_STATUS, uuid.UUID(ACME_OP4))  # waits until the abort
            await holder.execute("ROLLBACK TO SAVEPOINT cycle")


ON_ONE_NODE = pytest.mark.postgres_only(
    reason="forces a deadlock and counts it in the node's pg_stat_database; on Citus the "
    "cycle forms on a worker, where the coordinator's deadlock_timeout does not apply"
)


@ON_ONE_NODE
async def test_a_deadlock_is_retried_on_a_fresh_transaction(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    before = await _deadlocks(db)
    request = asyncio.create_task(
        client.post("/api/v1/resolve", headers=headers(ACME_OP4),
                    json={"conversation_id": str(CONVERSATION_5)})
    )  # fmt: skip
    await _force_deadlocks(db, times=1)
    response = await request
    assert await _deadlocks(db, at_least=before + 1) >= before + 1
    assert response.status_code == 200, response.text
    assert response.json()["data"]["state"] == "RESOLVED"


@ON_ONE_NODE
async def test_a_second_deadlock_is_a_503_with_retry_after(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    before = await _deadlocks(db)
    request = asyncio.create_task(
        client.post("/api/v1/resolve", headers=headers(ACME_OP4),
                    json={"conversation_id": str(CONVERSATION_5)})
    )  # fmt: skip
    await _force_deadlocks(db, times=2)
    response = await request
    assert await _deadlocks(db, at_least=before + 2) >= before + 2
    assert (response.status_code, response.json()["error"]["code"]) == (503, "DB_UNAVAILABLE")
    assert response.headers["Retry-After"] == "1"
    state = await db.fetchval("SELECT state::text FROM conversation_refs WHERE id = $1",
                              CONVERSATION_5)  # fmt: skip
    assert state == "ALLOCATED"  # nothing half-applied


async def test_a_lock_held_past_lock_timeout_is_a_503(
    app: FastAPI, client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    assert await app.state.db.fetchval("SHOW lock_timeout") == "2s"
    async with db.acquire() as holder, holder.transaction():
        await holder.execute(LOCK_CONVERSATION, CONVERSATION_5)
        # Held until the request is answered: without lock_timeout it would wait for the
        # 15 s command timeout, well past this bound.
        response = await asyncio.wait_for(
            client.post("/api/v1/resolve", headers=headers(ACME_OP4),
                        json={"conversation_id": str(CONVERSATION_5)}),
            timeout=10,
        )  # fmt: skip
    assert (response.status_code, response.json()["error"]["code"]) == (503, "DB_UNAVAILABLE")
    assert response.headers["Retry-After"] == "1"


async def test_pooled_sessions_bound_idle_transactions(app: FastAPI) -> None:
    assert await app.state.db.fetchval("SHOW idle_in_transaction_session_timeout") == "5s"
    assert await app.state.db.fetchval("SHOW tcp_keepalives_idle") == "5"


@pytest_asyncio.fixture(loop_scope="session")
async def read_only_client(
    settings: Settings, db: asyncpg.Pool
) -> AsyncIterator[httpx.AsyncClient]:
    """The service on a server that refuses writes, as a standby does after a failover: it
    logs in as a role whose sessions are read-only."""
    await db.execute(
        "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'read_only_tester') "
        "THEN CREATE ROLE read_only_tester LOGIN SUPERUSER PASSWORD 'ro'; END IF; END $$"
    )
    await db.execute("ALTER ROLE read_only_tester SET default_transaction_read_only = on")
    assert settings.database_url is not None
    url = urlsplit(settings.database_url)
    netloc = f"read_only_tester:ro@{url.hostname}:{url.port}"
    read_only = Settings.model_validate({
        **settings.model_dump(), "database_url": urlunsplit(url._replace(netloc=netloc)),
        "db_min_conns": 1, "db_max_conns": 4,
    })  # fmt: skip
    application = create_app(read_only)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


async def test_a_read_only_server_refuses_writes_with_503(
    read_only_client: httpx.AsyncClient,
) -> None:
    read = await read_only_client.get("/api/v1/operator/status", headers=headers(ACME_OP4))
    assert read.status_code == 200
    for method, path, body in (
        ("POST", "/api/v1/resolve", {"conversation_id": str(CONVERSATION_5)}),
        ("PUT", "/api/v1/operator/status", {"status": "OFFLINE"}),
        ("POST", "/api/v1/allocate", None),
    ):
        response = await read_only_client.request(
            method, path, headers=headers(ACME_OP4), json=body
        )
        assert (response.status_code, response.json()["error"]["code"]) == (
            503, "DB_UNAVAILABLE"), (path, response.text)  # fmt: skip
        assert response.headers["Retry-After"] == "1"


def _settings_for(settings: Settings, dsn: str, **overrides: object) -> Settings:
    # A new object: `Settings.dsn` is cached on the instance.
    return Settings.model_validate({**settings.model_dump(), "database_url": dsn, **overrides})


async def test_a_connection_whose_backend_was_terminated_while_idle_is_not_used(
    settings: Settings, db: asyncpg.Pool
) -> None:
    """A terminated idle backend sends a FATAL message, then closes its socket; asyncpg reads
    the message at once but sees the close only later (here the proxy holds the close back).
    A statement sent in between is refused by asyncpg with "cannot switch to state 12;
    another operation (2) is in progress" — the error of the fault run, which is not about
    two operations sharing a connection. Such a connection is discarded and the statement (or
    the transaction's BEGIN) runs on a fresh one."""
    assert settings.database_url is not None
    proxy = await PgProxy(settings.database_url, eof_delay=0.5).start()
    pool = await create_pool(_settings_for(settings, proxy.dsn, db_min_conns=1, db_max_conns=1))
    database = Database(pool)

    async def terminate_idle_backend() -> int:
        pid = int(await database.fetchval("SELECT pg_backend_pid()"))
        await db.execute("SELECT pg_terminate_backend($1::int)", pid)
        await asyncio.sleep(0.1)  # the FATAL message is read; the close is not seen yet
        return pid

    try:
        pid = await terminate_idle_backend()
        assert await database.fetchval("SELECT pg_backend_pid()") != pid
        pid = await terminate_idle_backend()
        async with database.transaction() as conn:
            assert await conn.fetchval("SELECT pg_backend_pid()") != pid
    finally:
        await pool.close()
        await proxy.close()
