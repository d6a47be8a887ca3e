"""The asyncpg connection pool: created with retries, health-checked, closed on shutdown.

Transactions are opened by services with `async with pool.acquire() as conn, conn.transaction()`
and every statement of the transaction goes through that `conn` (never back to the pool).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from tenacity import (
    AsyncRetrying,
    before_sleep_log,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from inbox_allocation.config import Settings
from inbox_allocation.domain.errors import DatabaseUnavailable
from inbox_allocation.logging import get_logger

log = get_logger(__name__)

# Errors meaning "the database is not reachable right now" (as opposed to a query bug).
CONNECTION_ERRORS: tuple[type[Exception], ...] = (
    asyncpg.PostgresConnectionError,  # SQLSTATE class 08
    # Class 57: shutting down / starting up (cannot_connect_now), backend terminated
    # (admin_shutdown), crash recovery, statement timeout (query_canceled).
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.InterfaceError,  # connection closed underneath a query
    # A connection that died mid-operation can leave asyncpg's protocol state inconsistent
    # ("cannot switch to state …") when the pool resets it on release.
    asyncpg.InternalClientError,
    ConnectionError,
    socket.gaierror,
    OSError,
    TimeoutError,
)

# The connection died under a running statement: the server-side transaction is gone.
DISCONNECT_ERRORS: tuple[type[Exception], ...] = (
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.AdminShutdownError,  # pg_terminate_backend, server shutdown
    asyncpg.CrashShutdownError,
    ConnectionResetError,
    BrokenPipeError,
)


class TransactionInterrupted(DatabaseUnavailable):
    """The connection was lost inside a transaction before COMMIT was sent: PostgreSQL rolled
    it back, nothing of it is visible, so running it again is safe (the API retries once)."""


# What services receive: a plain connection or one borrowed from the pool.
Connection: TypeAlias = asyncpg.Connection | PoolConnectionProxy

# How long a request may wait for a connection or a connect before answering 503
# DB_UNAVAILABLE (docs/decisions.md#database-outages: within 2 s, never a hang).
CONNECT_TIMEOUT_SECONDS = 2.0
ACQUIRE_TIMEOUT_SECONDS = 2.0


class Database:
    """The pool plus the two ways services use it: one statement, or one transaction.

    Waiting for a connection is bounded, so an exhausted pool or a dead server turns into
    503 DB_UNAVAILABLE instead of a hanging request.
    """

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    def connection(self) -> Any:  # asyncpg's PoolAcquireContext
        return self.pool.acquire(timeout=ACQUIRE_TIMEOUT_SECONDS)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        """BEGIN … COMMIT on one connection; every statement of the block must use it.

        A connection lost before COMMIT raises TransactionInterrupted (safe to retry); lost
        during COMMIT the outcome is unknown and the error is raised as it is (never retried).
        """
        committing = False
        try:
            async with self.connection() as conn:
                transaction = conn.transaction()
                await transaction.start()
                try:
                    yield conn
                except BaseException:
                    with contextlib.suppress(Exception):
                        await transaction.rollback()
                    raise
                committing = True
                await transaction.commit()
        except DISCONNECT_ERRORS as exc:
            if committing:
                raise
            raise TransactionInterrupted() from exc

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        async with self.connection() as conn:
            return await conn.fetch(query, *args)  # type: ignore[no-any-return]

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        async with self.connection() as conn:
            row: asyncpg.Record | None = await conn.fetchrow(query, *args)
            return row

    async def fetchval(self, query: str, *args: Any) -> Any:
        async with self.connection() as conn:
            return await conn.fetchval(query, *args)

    async def execute(self, query: str, *args: Any) -> str:
        async with self.connection() as conn:
            return await conn.execute(query, *args)  # type: ignore[no-any-return]


async def _keep_session(_: asyncpg.Connection) -> None:
    """Returning a connection to the pool needs no reset: the service never changes session
    state (no SET, LISTEN, advisory locks or cursors; settings come with the connection), and
    asyncpg still rolls back a transaction left open. Skipping asyncpg's default reset saves a
    round trip of four statements on every request."""


async def create_pool(settings: Settings, *, attempts: int = 5) -> asyncpg.Pool:
    """Connect with exponential backoff and jitter (1 s doubling, capped at 30 s)."""
    retrying = AsyncRetrying(
        stop=stop_after_attempt(attempts),
        wait=wait_exponential_jitter(initial=1, max=30, jitter=0.2),
        retry=retry_if_exception_type(CONNECTION_ERRORS),
        before_sleep=before_sleep_log(log, 30),  # type: ignore[arg-type]
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            pool = await asyncpg.create_pool(
                settings.dsn,
                min_size=settings.db_min_conns,
                max_size=settings.db_max_conns,
                max_inactive_connection_lifetime=1800,  # idle 30 min
                max_queries=1_000_000,
                timeout=CONNECT_TIMEOUT_SECONDS,
                # A query that runs past WRITE_TIMEOUT is cancelled (and answered 503).
                command_timeout=settings.write_timeout.total_seconds(),
                # UTC sessions: `now()` and timestamps never depend on the server's zone.
                server_settings={"timezone": "UTC", "application_name": "inbox-allocation"},
                reset=_keep_session,
            )
            await pool.fetchval("SELECT 1")
            log.info("database pool ready", min=settings.db_min_conns, max=settings.db_max_conns)
            return pool
    raise AssertionError("unreachable: tenacity re-raises the last error")


async def ping(pool: asyncpg.Pool, limit_seconds: float) -> str | None:
    """None when the database answers `SELECT 1` in time, else the reason."""
    try:
        async with asyncio.timeout(limit_seconds):
            await pool.fetchval("SELECT 1")
    except TimeoutError:
        return f"no answer within {limit_seconds:g}s"
    except CONNECTION_ERRORS as exc:
        return f"{type(exc).__name__}: {exc}"
    return None
