"""Database faults: an outage under load, and backends killed in the middle of a request.

- While PostgreSQL is down, /api/v1 requests fail fast (≤ 2 s) with 503 DB_UNAVAILABLE, /ready
  is 503 and /health stays 200; once it is back the service recovers by itself (≤ 5 s).
- A transaction whose backend is killed before COMMIT is retried once on a fresh connection
  (nothing of it was applied); a second loss is answered 503; nothing is ever half-applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import asyncpg
import httpx
import pytest_asyncio

from inbox_allocation.app import create_app
from inbox_allocation.config import Settings
from inbox_allocation.db import migrations
from inbox_allocation.db.citus_cluster import CitusCluster
from inbox_allocation.db.launcher import EmbeddedPostgres, LauncherConfig
from inbox_allocation.db.seed import seed_database
from inbox_allocation.db.seed_ids import (
    ACME,
    ACME_MANAGER,
    ACME_OP4,
    ACME_OP5,
    ACME_OP7,
    conversation,
)
from inbox_allocation.processes import free_port, world_traversable_tempdir
from tests.support.helpers import is_citus
from tests.support.http import headers

OUTAGE_SECONDS = 10.0
FAIL_FAST_SECONDS = 2.0
RECOVERY_SECONDS = 5.0


# --- an outage under load -------------------------------------------------------------------


@dataclass
class Outcome:
    sent: float
    latency: float
    status: int | None  # None: the client saw no HTTP response at all
    code: str | None


@pytest_asyncio.fixture(loop_scope="session")
async def own_database(db_engine: str) -> AsyncIterator[tuple[EmbeddedPostgres, LauncherConfig]]:
    """A database of its own to stop and restart: a PostgreSQL server, or on Citus a cluster
    whose coordinator (the server the service talks to) is the one stopped."""
    base = world_traversable_tempdir("inbox-allocation-outage-")
    cluster: CitusCluster | None = None
    if db_engine == "citus":
        cluster = CitusCluster(base, user="test", password="test", database="outage", fsync=False)
        server = cluster.start().node(0)
        config = server.config
    else:
        config = LauncherConfig(
            data_dir=base / "pg", port=free_port(), user="test", password="test",
            database="outage", fsync=False,
        )  # fmt: skip
        server = EmbeddedPostgres(config).start()
    try:
        migrations.upgrade(server.dsn)
        await seed_database(server.dsn)
        yield server, config
    finally:
        if cluster is not None:
            cluster.stop()  # the coordinator's object carries the restarted process
        else:
            server.stop()
        shutil.rmtree(base, ignore_errors=True)


async def _load(client: httpx.AsyncClient, operator: str, stop: asyncio.Event,
                outcomes: list[Outcome]) -> None:  # fmt: skip
    """One operator: allocate, resolve what it got, read its status; record everything."""
    while not stop.is_set():
        for method, path, body in (
            ("POST", "/api/v1/allocate", None),
            ("GET", "/api/v1/operator/status", None),
            ("GET", "/api/v1/conversations?per_page=5", None),
        ):
            started = time.monotonic()
            try:
                response = await client.request(method, path, headers=headers(operator), json=body)
                status = response.status_code
                code = response.json().get("error", {}).get("code") if status >= 400 else None
                if path.endswith("allocate") and status == 200:
                    resolve = {"conversation_id": response.json()["data"]["id"]}
                    await client.post("/api/v1/resolve", headers=headers(operator), json=resolve)
            except httpx.HTTPError:
                status, code = None, None
            outcomes.append(Outcome(started, time.monotonic() - started, status, code))
            await asyncio.sleep(0.01)


async def test_outage_fails_fast_and_recovers(
    own_database: tuple[EmbeddedPostgres, LauncherConfig],
) -> None:
    server, config = own_database
    settings = Settings(
        database_url=server.dsn, db_min_conns=2, db_max_conns=10, log_level="error",
        grace_period_interval=timedelta(seconds=1),
    )  # fmt: skip
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            outcomes: list[Outcome] = []
            stop = asyncio.Event()
            load = [asyncio.create_task(_load(client, op, stop, outcomes))
                    for op in (ACME_OP4, ACME_OP5, ACME_OP7, ACME_MANAGER)]  # fmt: skip
            await asyncio.sleep(1.0)

            down_at = time.monotonic()
            await asyncio.to_thread(server.stop)
            await asyncio.sleep(0.5)
            ready = await client.get("/ready")
            health = await client.get("/health")
            assert ready.status_code == 503
            assert ready.json()["data"]["ready"] is False
            assert health.status_code == 200  # liveness must not restart a healthy process
            assert health.json()["data"]["checks"]["database"]["status"] == "unhealthy"
            await asyncio.sleep(OUTAGE_SECONDS - 0.5)

            restart_at = time.monotonic()
            restarted = await asyncio.to_thread(EmbeddedPostgres(config).start)
            # Back = accepting connections again (a Citus coordinator takes longer to start on
            # a busy machine; what is measured is how fast the service notices).
            up_at = time.monotonic()
            recovered_at = None
            while time.monotonic() - up_at < RECOVERY_SECONDS + 5:
                probe = await client.get("/api/v1/operator/status", headers=headers(ACME_OP4))
                if probe.status_code == 200:
                    recovered_at = time.monotonic()
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)  # load continues on the recovered database
            stop.set()
            await asyncio.gather(*load)
            assert (await client.get("/ready")).status_code == 200

    server.process, server.attached_pid = restarted.process, None  # the fixture stops it
    during = [o for o in outcomes if down_at + 0.2 < o.sent < restart_at]
    assert during, "no request was sent during the outage"
    assert all(o.status == 503 and o.code == "DB_UNAVAILABLE" for o in during), {
        (o.status, o.code) for o in during
    }
    assert max(o.latency for o in during) <= FAIL_FAST_SECONDS
    unexpected = {
        (o.status, o.code)
        for o in outcomes
        if o.status is None or (o.status >= 500 and o.status != 503)
    }
    assert not unexpected, unexpected
    assert recovered_at is not None
    assert recovered_at - up_at <= RECOVERY_SECONDS, recovered_at - up_at
    # The figures, for `pytest -s` (the closing note quotes them).
    print(
        f"\noutage {OUTAGE_SECONDS:.0f} s: {len(during)} requests answered 503 DB_UNAVAILABLE, "
        f"slowest {max(o.latency for o in during) * 1e3:.0f} ms; "
        f"recovered {(recovered_at - up_at) * 1e3:.0f} ms after the database was back"
    )
    after = [o for o in outcomes if o.sent > recovered_at]
    assert after
    assert all(o.status is not None and o.status < 500 for o in after)

    conn = await asyncpg.connect(restarted.dsn)
    try:  # nothing half-applied: state and assignee always agree
        inconsistent = await conn.fetchval(
            "SELECT count(*) FROM conversation_refs WHERE (state = 'ALLOCATED') "
            "<> (assigned_operator_id IS NOT NULL) AND state <> 'RESOLVED'"
        )
        assert inconsistent == 0
    finally:
        await conn.close()


# --- backends killed in the middle of a request ---------------------------------------------


async def _backend_waiting_for_lock(
    db: asyncpg.Pool, fragment: str, killed: tuple[int, ...] = ()
) -> int:
    """A backend waiting for a lock in a query containing `fragment`, other than those in
    `killed` (a terminated backend can still be listed as waiting for a moment): its pid, or
    on Citus its global pid (the wait happens on a worker; citus_lock_waits names the
    coordinator's session by global pid, which Citus's pg_terminate_backend accepts)."""
    if await is_citus(db):
        query = (
            "SELECT waiting_gpid FROM citus_lock_waits "
            "WHERE blocked_statement LIKE '%' || $1 || '%' "
            "AND waiting_gpid <> ALL($2::bigint[]) LIMIT 1"
        )
    else:
        query = (
            "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND query LIKE '%' || $1 || '%' AND pid <> pg_backend_pid() "
            "AND pid <> ALL($2::int[]) LIMIT 1"
        )
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        pid = await db.fetchval(query, fragment, list(killed))
        if pid is not None:
            return int(pid)
        await asyncio.sleep(0.02)
    raise AssertionError(f"no backend waiting on a lock in a query with {fragment!r}")


async def _terminate(db: asyncpg.Pool, pid: int) -> None:
    """Terminate the backend and wait (up to 5 s) until it is gone, so that the next look for
    a waiting backend cannot find the dying one again. Citus adds pg_terminate_backend for
    global pids (bigint) beside PostgreSQL's (integer)."""
    cast = "bigint" if await is_citus(db) else "integer"
    await db.execute(f"SELECT pg_terminate_backend($1::{cast}, 5000)", pid)


@contextlib.asynccontextmanager
async def _row_locked(db: asyncpg.Pool, lock_sql: str, key: uuid.UUID) -> AsyncIterator[None]:
    """Hold the row lock of `lock_sql` ($1 = Acme, $2 = key) in a transaction of its own for
    the block, so the request under test waits on it and its backend can be killed meanwhile."""
    async with db.acquire() as holder, holder.transaction():
        await holder.execute(lock_sql, uuid.UUID(ACME), key)
        yield


LOCK_CONVERSATION = "SELECT 1 FROM conversation_refs WHERE tenant_id = $1 AND id = $2 FOR UPDATE"


async def test_transaction_killed_before_commit_is_retried_once(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    target = uuid.UUID(conversation(5))  # ALLOCATED to operator 04
    async with _row_locked(db, LOCK_CONVERSATION, target):
        request = asyncio.create_task(client.post(
            "/api/v1/resolve", headers=headers(ACME_OP4),
            json={"conversation_id": conversation(5)},
        ))  # fmt: skip
        victim = await _backend_waiting_for_lock(db, "FOR NO KEY UPDATE OF c")
        await _terminate(db, victim)
        retried = await _backend_waiting_for_lock(db, "FOR NO KEY UPDATE OF c", (victim,))
        assert retried != victim  # the retry runs on a fresh connection
    response = await request
    assert response.status_code == 200
    assert response.json()["data"]["state"] == "RESOLVED"


async def test_transaction_killed_twice_fails_cleanly(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    target = uuid.UUID(conversation(5))
    async with _row_locked(db, LOCK_CONVERSATION, target):
        request = asyncio.create_task(client.post(
            "/api/v1/deallocate", headers=headers(ACME_MANAGER),
            json={"conversation_id": conversation(5)},
        ))  # fmt: skip
        killed: tuple[int, ...] = ()
        for _ in range(2):
            victim = await _backend_waiting_for_lock(db, "FOR NO KEY UPDATE OF c", killed)
            await _terminate(db, victim)
            killed += (victim,)
    response = await request
    assert (response.status_code, response.json()["error"]["code"]) == (503, "DB_UNAVAILABLE")
    row = await db.fetchrow(
        "SELECT state::text, assigned_operator_id::text FROM conversation_refs WHERE id = $1",
        target,
    )
    assert row is not None
    assert (row["state"], row["assigned_operator_id"]) == ("ALLOCATED", ACME_OP4)


async def test_allocate_killed_while_waiting_for_its_status_row_is_retried_once(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    """/allocate never waits inside its one autocommit statement (it takes the caller's status
    row NOWAIT); when the row is busy it waits in a transaction of its own (lock order,
    sql/locking.py). Killed there, nothing was applied: it is retried once on a fresh
    connection and allocates exactly one conversation."""
    before = await db.fetchval("SELECT count(*) FROM conversation_refs WHERE state = 'ALLOCATED'")
    lock_status = (
        "SELECT 1 FROM operator_status WHERE tenant_id = $1 AND operator_id = $2 FOR UPDATE"
    )
    async with _row_locked(db, lock_status, uuid.UUID(ACME_OP4)):
        request = asyncio.create_task(client.post("/api/v1/allocate", headers=headers(ACME_OP4)))
        victim = await _backend_waiting_for_lock(db, "FOR NO KEY UPDATE OF s")
        await _terminate(db, victim)
    response = await request
    assert response.status_code == 200, response.text
    after = await db.fetchval("SELECT count(*) FROM conversation_refs WHERE state = 'ALLOCATED'")
    assert after == before + 1
