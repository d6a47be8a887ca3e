"""Test harness: one throwaway PostgreSQL per test session, the real app over httpx.

- The server is started by the service's own launcher (fsync off) in a 0755 temp dir, so it
  also works as root inside a private (0700) checkout.
- The schema is migrated once; before every test all tables are truncated and the contract's
  seed data is loaded again (~10 ms), so tests are independent and can use the seed ids.
- `client` drives the real ASGI app (middleware, routers, services, SQL) with its lifespan
  running, so requests go through a real asyncpg pool.
- TEST_DB_ENGINE=citus (`make test-citus`) runs the same suite against a Citus cluster (a
  coordinator and two workers, see inbox_allocation.db.citus_cluster): the service and the
  `pg_server`/`db` fixtures then talk to the coordinator, and the migrations distribute the
  tables. Tests that only make sense on one engine carry `postgres_only(reason=...)` or
  `citus_only(reason=...)`.
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
from inbox_allocation.db.citus_cluster import CitusCluster
from inbox_allocation.db.launcher import EmbeddedPostgres, LauncherConfig
from inbox_allocation.db.seed import seed_demo_data
from inbox_allocation.processes import free_port, world_traversable_tempdir
from tests.support.auth import insert_seed_tokens

# Children before parents (the order the Citus reseed deletes in).
TABLES = (
    "webhook_deliveries, webhooks, events, event_purges, "
    "api_token_lookup, api_tokens, idempotency_keys, grace_period_assignments, "
    "conversation_labels, labels, conversation_refs, operator_status, "
    "operator_inbox_subscriptions, operators, inboxes, tenants"
)


ENGINES = ("postgres", "citus")
ENGINE = os.environ.get("TEST_DB_ENGINE") or "postgres"
if ENGINE not in ENGINES:
    raise pytest.UsageError(f"TEST_DB_ENGINE={ENGINE!r}: expected one of {', '.join(ENGINES)}")


@pytest.fixture(scope="session")
def db_engine() -> str:
    """The engine the suite runs on: "postgres" or "citus"."""
    return ENGINE


@pytest.fixture(scope="session")
def citus_cluster() -> Iterator[CitusCluster | None]:
    """The Citus cluster of a TEST_DB_ENGINE=citus run (None on plain PostgreSQL)."""
    if ENGINE != "citus":
        yield None
        return
    base = world_traversable_tempdir("inbox-allocation-test-citus-")
    cluster = CitusCluster(
        base_dir=base,
        user="test",
        password="test",
        database="inbox_test",
        fsync=False,
        bin_dir=Path(os.environ["PG_BIN_DIR"]) if os.environ.get("PG_BIN_DIR") else None,
        settings={"max_connections": "300"},
    )
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server(citus_cluster: CitusCluster | None) -> Iterator[EmbeddedPostgres]:
    """The server the service talks to: a plain PostgreSQL, or the Citus coordinator."""
    if citus_cluster is not None:
        yield citus_cluster.node(0)
        return
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
async def db(dsn: str, db_engine: str) -> AsyncIterator[asyncpg.Pool]:
    """A separate pool for arranging and asserting on rows directly."""
    # The tests' own checks look across tenants on purpose (e.g. "did any row move into
    # another tenant?"), joining tables on other columns than tenant_id; on Citus such joins
    # need repartitioning, which is off by default. Only this pool: the service never joins so.
    settings = {"citus.enable_repartition_joins": "on"} if db_engine == "citus" else {}
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=10, server_settings=settings)
    try:
        yield pool
    finally:
        await pool.close()


@pytest_asyncio.fixture(loop_scope="session")
async def reseeded(db: asyncpg.Pool, db_engine: str) -> None:
    """Empty every table and load the seed data again, with one API token per seeded
    operator (tests.auth_support.seed_token)."""
    async with db.acquire() as conn:
        if db_engine == "citus":
            # On Citus a TRUNCATE is a DDL command on every shard of every table (~0.12 s
            # with 4 shards); deleting the few rows a test leaves takes ~0.01 s. Sequential
            # mode (one connection per worker): Citus refuses to modify the reference table
            # `tenants` after parallel modifications of distributed tables in one transaction.
            async with conn.transaction():
                await conn.execute("SET LOCAL citus.multi_shard_modify_mode = 'sequential'")
                for table in TABLES.split(", "):
                    await conn.execute(f"DELETE FROM {table}")
        else:
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
    config.addinivalue_line(
        "markers", "postgres_only(reason): runs on plain PostgreSQL only (reason required)"
    )
    config.addinivalue_line(
        "markers", "citus_only(reason): runs on the Citus cluster only (reason required)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip tests marked for the other engine, saying which engine and why."""
    for item in items:
        for marker_name, engine in (("postgres_only", "postgres"), ("citus_only", "citus")):
            marker = item.get_closest_marker(marker_name)
            if marker is None:
                continue
            reason = marker.kwargs.get("reason")
            if not reason:
                raise pytest.UsageError(f"{item.nodeid}: @{marker_name} needs reason=...")
            if engine != ENGINE:
                item.add_marker(pytest.mark.skip(reason=f"{marker_name}: {reason}"))
