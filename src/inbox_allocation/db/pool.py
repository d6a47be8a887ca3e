"""The asyncpg connection pool: created with retries, health-checked, closed on shutdown.

Transactions are opened by services with `async with pool.acquire() as conn, conn.transaction()`
and every statement of the transaction goes through that `conn` (never back to the pool).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from datetime import timedelta
from typing import Any, TypeAlias
from uuid import UUID

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
from inbox_allocation.sql.idempotency import MARK_EXECUTED

log = get_logger(__name__)

# Errors meaning "the database is not reachable right now" (as opposed to a query bug), from
# any database call. Registered app-wide as 503 DB_UNAVAILABLE, so nothing here may also be
# what a programming error raises: no bare OSError or TimeoutError (a file error, any
# timeout), no asyncpg InterfaceError ("connection has been released back to the pool") or
# InternalClientError ("another operation is in progress"). Those are 500s with a stack
# trace, except where Database knows they came from the database: a timeout waiting for a
# pooled connection or a statement, an OSError while connecting, a pooled connection found
# dead (`_stale`) — each raised as DatabaseUnavailable.
CONNECTION_ERRORS: tuple[type[Exception], ...] = (
    asyncpg.PostgresConnectionError,  # SQLSTATE class 08
    # Class 57: shutting down / starting up (cannot_connect_now), backend terminated
    # (admin_shutdown), crash recovery, statement timeout (query_canceled).
    asyncpg.exceptions.OperatorInterventionError,
    ConnectionError,  # refused, reset, broken pipe
    socket.gaierror,  # the database's host name does not resolve
)

# What a connection attempt of our own (pool start-up, the event hub's connection, `ping`)
# raises when the server cannot be reached: also a route error (OSError, e.g. "no route to
# host") and the connect timeout.
CONNECT_ERRORS: tuple[type[Exception], ...] = (*CONNECTION_ERRORS, OSError, TimeoutError)

# The connection died under a running statement: the server-side transaction is gone.
DISCONNECT_ERRORS: tuple[type[Exception], ...] = (
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.AdminShutdownError,  # pg_terminate_backend, server shutdown
    asyncpg.CrashShutdownError,
    ConnectionResetError,
    BrokenPipeError,
)


# PostgreSQL refused the work for a condition of the moment rather than of the request: answered
# 503 DB_UNAVAILABLE (with Retry-After), never 500. Class 53: too many connections, out of
# memory or disk; 25006: a read-only server (a standby after a failover); 55P03: a row lock
# not granted within `lock_timeout`; class 40 not retried (or failing again after the retry).
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    *CONNECTION_ERRORS,
    asyncpg.InsufficientResourcesError,
    asyncpg.ReadOnlySQLTransactionError,
    asyncpg.LockNotAvailableError,
    asyncpg.TransactionRollbackError,
)

# PostgreSQL rolled the transaction (or the single statement) back to break a deadlock or a
# serialization conflict: nothing of it was applied, so running it again is safe.
CONFLICT_ERRORS: tuple[type[Exception], ...] = (
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
)


# What a transaction whose connection died may raise (InternalClientError: see `_stale`).
LOST_ERRORS: tuple[type[Exception], ...] = (*DISCONNECT_ERRORS, asyncpg.InternalClientError)


class TransactionInterrupted(DatabaseUnavailable):
    """The transaction was rolled back before COMMIT was sent (connection lost, deadlock,
    serialization failure): nothing of it is visible, so running it again is safe (the API
    retries the request once on a fresh transaction, then answers 503)."""


def _stale(exc: BaseException) -> bool:
    """A pooled connection whose backend was terminated while it sat idle in the pool.

    PostgreSQL sends a FATAL message before closing the socket; asyncpg reads it while no
    operation is running, leaves its protocol in the "consume until ready" state, and only
    notices the closed socket on a later turn of the event loop. A connection handed out in
    between refuses its first statement with "cannot switch to state …; another operation is
    in progress" before sending anything — so the statement did not run, and the connection
    is dead (not shared by two operations).
    """
    return isinstance(exc, asyncpg.InternalClientError) and str(exc).startswith(
        "cannot switch to state"
    )


# The idempotency reservation (tenant_id, row id) of the request being served, if it has one.
# Its writes then always run in a transaction that also marks the reservation executed, so
# "did this request commit?" has an exact answer even when the COMMIT's reply is lost.
RESERVATION: ContextVar[tuple[UUID, UUID] | None] = ContextVar(
    "idempotency_reservation", default=None
)

# What services receive: a plain connection or one borrowed from the pool.
Connection: TypeAlias = asyncpg.Connection | PoolConnectionProxy

# How long a request may wait for a connection or a connect before answering 503
# DB_UNAVAILABLE (docs/decisions.md#database-outages: within 2 s, never a hang).
CONNECT_TIMEOUT_SECONDS = 2.0
ACQUIRE_TIMEOUT_SECONDS = 2.0


# The tenant whose request is being served (set once its identity headers are read).
TENANT: ContextVar[UUID | None] = ContextVar("tenant", default=None)


class TenantBusy(DatabaseUnavailable):
    """The tenant already uses its share of the pool: 503 with Retry-After, so one tenant's
    load (or one operator's expensive requests) cannot take every connection."""

    message = "too many concurrent requests for this tenant, retry later"


class TenantSlots:
    """At most `limit` pooled connections in use per tenant at once; a request over it waits
    (bounded) for one of its own tenant's connections, never for another tenant's."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._slots: dict[UUID, asyncio.Semaphore] = {}
        self._users: dict[UUID, int] = {}

    @asynccontextmanager
    async def hold(self, tenant: UUID, wait_seconds: float) -> AsyncIterator[None]:
        slots = self._slots.setdefault(tenant, asyncio.Semaphore(self.limit))
        self._users[tenant] = self._users.get(tenant, 0) + 1
        try:
            try:
                async with asyncio.timeout(wait_seconds):
                    await slots.acquire()
            except TimeoutError:
                raise TenantBusy() from None
            try:
                yield
            finally:
                slots.release()
        finally:
            self._users[tenant] -= 1
            if not self._users[tenant]:  # nobody holds or waits: forget the tenant
                del self._users[tenant], self._slots[tenant]


class Database:
    """The pool plus the two ways services use it: one statement, or one transaction.

    Waiting for a connection is bounded, so an exhausted pool or a dead server turns into
    503 DB_UNAVAILABLE instead of a hanging request.
    """

    def __init__(self, pool: asyncpg.Pool, max_per_tenant: int | None = None) -> None:
        self.pool = pool
        self.tenant_slots = TenantSlots(max_per_tenant) if max_per_tenant else None

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        """A pooled connection, waited for at most 2 s in all. While a request of a tenant is
        being served (TENANT is set), it also takes one of the tenant's slots first. No
        connection in time, or none can be opened: DatabaseUnavailable."""
        tenant = TENANT.get()
        if tenant is None or self.tenant_slots is None:
            conn = await self._acquire(ACQUIRE_TIMEOUT_SECONDS)
            try:
                yield conn
            finally:
                await self.pool.release(conn)
            return
        deadline = time.monotonic() + ACQUIRE_TIMEOUT_SECONDS
        async with self.tenant_slots.hold(tenant, ACQUIRE_TIMEOUT_SECONDS):
            conn = await self._acquire(max(0.001, deadline - time.monotonic()))
            try:
                yield conn
            finally:
                await self.pool.release(conn)

    async def _acquire(self, wait_seconds: float) -> PoolConnectionProxy:
        try:
            conn: PoolConnectionProxy = await self.pool.acquire(timeout=wait_seconds)
        except CONNECT_ERRORS as exc:
            # Only the wait for a connection (or the opening of a new one) is in this try:
            # its timeout and OS errors are the database's, not a bug.
            raise DatabaseUnavailable() from exc
        return conn

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        """BEGIN … COMMIT on one connection; every statement of the block must use it.

        Rolled back before COMMIT (connection lost, deadlock, serialization failure) it raises
        TransactionInterrupted (safe to retry); a connection lost during COMMIT leaves the
        outcome unknown and the error is raised as it is (never retried).
        """
        committing = False
        try:
            async with contextlib.AsyncExitStack() as stack:
                conn, transaction = await self._begin(stack)
                try:
                    try:
                        yield conn
                    except BaseException:
                        with contextlib.suppress(Exception):
                            await transaction.rollback()
                        raise
                    reservation = RESERVATION.get()
                    if reservation is not None:
                        await conn.execute(MARK_EXECUTED, *reservation)
                    committing = True
                    await transaction.commit()
                except asyncpg.InternalClientError as exc:
                    if _stale(exc):
                        conn.terminate()  # never back into the pool
                    raise
        except CONFLICT_ERRORS as exc:
            raise TransactionInterrupted() from exc
        except LOST_ERRORS as exc:
            if committing and _stale(exc):
                # The connection died under the COMMIT: the outcome is unknown, so no retry,
                # but the database's condition all the same (503, not a bug).
                raise DatabaseUnavailable() from exc
            if committing or not (isinstance(exc, DISCONNECT_ERRORS) or _stale(exc)):
                raise
            raise TransactionInterrupted() from exc
        except TimeoutError as exc:
            # A statement of the block ran past the command timeout (the block holds nothing
            # but database calls): the database is too slow right now.
            raise DatabaseUnavailable() from exc

    async def _begin(self, stack: contextlib.AsyncExitStack) -> tuple[Connection, Any]:
        """A pooled connection with BEGIN sent, released by `stack`; a stale connection (see
        `_stale`) is discarded and another one taken."""
        for attempt in (1, 2):
            acquired = self.connection()
            conn = await acquired.__aenter__()
            try:
                transaction = conn.transaction()
                await transaction.start()
            except BaseException as exc:
                stale = _stale(exc)
                if stale:
                    conn.terminate()
                await acquired.__aexit__(type(exc), exc, exc.__traceback__)
                if stale and attempt == 1:
                    continue
                raise
            stack.push_async_exit(acquired.__aexit__)
            return conn, transaction
        raise AssertionError("unreachable")

    async def _run(self, method: str, query: str, *args: Any) -> Any:
        """One autocommit statement. A deadlock or serialization failure rolled it back:
        TransactionInterrupted (the route retries). A stale pooled connection refused it
        before sending anything: it runs once more on a fresh connection. In a request with
        an idempotency reservation it runs in a transaction of its own (see RESERVATION)."""
        if RESERVATION.get() is not None:
            async with self.transaction() as conn:
                return await getattr(conn, method)(query, *args)
        for attempt in (1, 2):
            try:
                async with self.connection() as conn:
                    try:
                        return await getattr(conn, method)(query, *args)
                    except asyncpg.InternalClientError as exc:
                        if not _stale(exc):
                            raise
                        conn.terminate()
                        if attempt == 2:
                            raise DatabaseUnavailable() from exc
            except CONFLICT_ERRORS as exc:
                raise TransactionInterrupted() from exc
            except TimeoutError as exc:  # the statement ran past the command timeout
                raise DatabaseUnavailable() from exc
        raise AssertionError("unreachable")

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self._run("fetch", query, *args)
        return rows

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self._run("fetchrow", query, *args)
        return row

    async def fetchval(self, query: str, *args: Any) -> Any:
        return await self._run("fetchval", query, *args)

    async def execute(self, query: str, *args: Any) -> str:
        status: str = await self._run("execute", query, *args)
        return status


async def _keep_session(_: asyncpg.Connection) -> None:
    """Returning a connection to the pool needs no reset: the service never changes session
    state (no SET, LISTEN, advisory locks or cursors; settings come with the connection), and
    asyncpg still rolls back a transaction left open. Skipping asyncpg's default reset saves a
    round trip of four statements on every request."""


# Client side: a server that vanished without closing the socket (a half-open connection, e.g.
# a failover or a dropped network path) is noticed within about 2 s, so a request on such a
# connection answers 503 DB_UNAVAILABLE within the service's 2 s promise instead of waiting
# for WRITE_TIMEOUT: keepalive probes after 1 s of silence, and at most 2 s for sent data to be
# acknowledged (TCP_USER_TIMEOUT, which also bounds the keepalive probes on Linux).
KEEPALIVE_IDLE_SECONDS = 1
KEEPALIVE_INTERVAL_SECONDS = 1
KEEPALIVE_COUNT = 2
USER_TIMEOUT_MS = 2000


def session_settings(settings: Settings) -> dict[str, str]:
    """PostgreSQL settings of every pooled session."""

    def ms(value: timedelta) -> str:
        return str(max(1, int(value.total_seconds() * 1000)))

    return {
        # UTC sessions: `now()` and timestamps never depend on the server's zone.
        "timezone": "UTC",
        "application_name": "inbox-allocation",
        # A row lock not granted in time fails the statement (55P03, answered 503 with
        # Retry-After) rather than holding the request; it stays above deadlock_timeout
        # (1 s by default) so a deadlock is still detected, and retried, first.
        "lock_timeout": ms(settings.db_lock_timeout),
        # A session of ours left idle inside a transaction (its client gone half-open) is
        # ended by the server, releasing the row locks other requests wait for.
        "idle_in_transaction_session_timeout": ms(settings.db_idle_in_transaction_timeout),
        # Server side of the same: the server notices a vanished client of ours.
        "tcp_keepalives_idle": "5",
        "tcp_keepalives_interval": "1",
        "tcp_keepalives_count": "3",
    }


async def _keep_alive(conn: asyncpg.Connection) -> None:
    transport = getattr(conn, "_transport", None)
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return  # a Unix socket: nothing can go half-open
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (
        ("TCP_KEEPIDLE", KEEPALIVE_IDLE_SECONDS),
        ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL_SECONDS),
        ("TCP_KEEPCNT", KEEPALIVE_COUNT),
        ("TCP_USER_TIMEOUT", USER_TIMEOUT_MS),
    ):
        option = getattr(socket, name, None)  # Linux names; absent elsewhere
        if option is not None:
            sock.setsockopt(socket.IPPROTO_TCP, option, value)


async def create_pool(settings: Settings, *, attempts: int = 5) -> asyncpg.Pool:
    """Connect with exponential backoff and jitter (1 s doubling, capped at 30 s)."""
    retrying = AsyncRetrying(
        stop=stop_after_attempt(attempts),
        wait=wait_exponential_jitter(initial=1, max=30, jitter=0.2),
        retry=retry_if_exception_type(CONNECT_ERRORS),
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
                server_settings=session_settings(settings),
                init=_keep_alive,
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
    except CONNECT_ERRORS as exc:
        return f"{type(exc).__name__}: {exc}"
    return None
