"""Test harness: one throwaway PostgreSQL per test session, the real app over httpx.

- The server is started by the service's own launcher (fsync off) in a 0755 temp dir, so it
  also works as root inside a private (0700) checkout.
- The schema is migrated once; before every test all tables are truncated and the contract's
  seed data is loaded again (~10 ms), so tests are independent and can use the seed ids.
- `client` drives the real ASGI app (middleware, routers, services, SQL) with its lifespan
  running, so requests go through a real asyncpg pool.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from inbox_allocation.app import create_app
from inbox_allocation.config import Settings
from inbox_allocation.db import migrations
from inbox_allocation.db.launcher import EmbeddedPostgres, LauncherConfig
from inbox_allocation.db.seed import seed_demo_data
from tests.auth_support import insert_seed_tokens
from tests.helpers import free_port, world_traversable_tempdir

TABLES = (
    "api_token_lookup, api_tokens, idempotency_keys, grace_period_assignments, "
    "conversation_labels, labels, conversation_refs, operator_status, "
    "operator_inbox_subscriptions, operators, inboxes, tenants"
)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[EmbeddedPostgres]:
    base = world_traversable_tempdir("inbox-allocation-test-")
    config = LauncherConfig(
        data_dir=base / "pg",
        port=free_port(),
        user="test",
        password="test",
        database="inbox_test",
        bin_dir=Path(os.environ["PG_BIN_DIR"]) if os.environ.get("PG_BIN_DIR") else None,
        fsync=False,
        settings={"max_connections": "300"},
    )
    server = EmbeddedPostgres(config).start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def dsn(pg_server: EmbeddedPostgres) -> str:
    migrations.upgrade(pg_server.dsn)
    return pg_server.dsn


@pytest.fixture(scope="session")
def settings(dsn: str) -> Settings:
    # Long worker intervals: tests run the sweeper and the cleanup explicitly.
    return Settings(
        database_url=dsn,
        db_min_conns=2,
        db_max_conns=60,
        grace_period_interval=timedelta(hours=1),
        queue_aging_interval=timedelta(hours=1),
        idempotency_cleanup_interval=timedelta(hours=1),
        events_cleanup_interval=timedelta(hours=1),
        webhook_poll_interval=timedelta(hours=1),
        log_level="warning",
    )


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def db(dsn: str) -> AsyncIterator[asyncpg.Pool]:
    """A separate pool for arranging and asserting on rows directly."""
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=10)
    try:
        yield pool
    finally:
        await pool.close()


@pytest_asyncio.fixture(loop_scope="session")
async def reseeded(db: asyncpg.Pool) -> None:
    """Truncate every table and load the seed data again, with one API token per seeded
    operator (tests.auth_support.seed_token)."""
    async with db.acquire() as conn:
        await conn.execute(f"TRUNCATE {TABLES} CASCADE")
        await seed_demo_data(conn)
        await insert_seed_tokens(conn)


@pytest.fixture(autouse=True)
def fresh_seed(request: pytest.FixtureRequest) -> None:
    """Every test that touches the database starts from the seed data alone."""
    if "no_db" not in request.keywords:
        request.getfixturevalue("reseeded")


@pytest.fixture
def pinned_clock(app: FastAPI) -> Iterator[datetime]:
    """Freeze the instant live priorities are evaluated at (restored afterwards)."""
    instant = datetime.now(UTC)
    app.state.clock = lambda: instant
    try:
        yield instant
    finally:
        del app.state.clock


@pytest_asyncio.fixture(loop_scope="session")
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "no_db: the test does not need the seeded database")
