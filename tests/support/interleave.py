"""Interleaving real connections: run service methods on their own connections, each started
only once the previous one is waiting for a row lock, in an order a test chooses.

An `Actor` is one database session (a pool of exactly one connection, so its backend pid is
known) with the service objects built on it; `start()` runs one service call on it as a task
and returns once that call is waiting for a lock (PostgreSQL's own view: pg_stat_activity
`wait_event_type = 'Lock'`) or has finished. A `Holder` is a plain session that takes locks
with SQL to hold another transaction at a chosen point, then commits or rolls back.

Waiting queues on a row are served in arrival order, so "start A, then B" fixes who gets a
lock that both wait for: the tests build the exact interleavings of the audit this way, with
the service's own code, and a deadlock shows up as asyncpg.DeadlockDetectedError (after
PostgreSQL's deadlock_timeout, 1 s).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from inbox_allocation.db.pool import Database
from tests.support.helpers import is_citus

WAIT_SECONDS = 10.0


@dataclass
class Actor:
    name: str
    pool: asyncpg.Pool
    pid: int
    db: Database
    # On Citus: the session's global pid, by which the cluster's wait graph names it.
    gpid: int | None = None
    task: asyncio.Task[Any] | None = None

    async def start(self, call: Callable[[], Awaitable[Any]], observer: asyncpg.Pool) -> None:
        """Run `call` and return once it waits for a lock or has finished."""
        self.task = asyncio.ensure_future(call())
        await until_waiting_or_done(observer, self)

    async def outcome(self) -> Any:
        """The call's result, or the exception it raised (returned, not raised)."""
        assert self.task is not None
        try:
            return await asyncio.wait_for(self.task, WAIT_SECONDS)
        except Exception as exc:  # the tests inspect what went wrong
            return exc


@dataclass
class Holder:
    """A transaction of the test's own that holds locks until released."""

    conn: asyncpg.Connection
    transaction: Any = field(default=None)

    async def hold(self, query: str, *args: Any) -> None:
        if self.transaction is None:
            self.transaction = self.conn.transaction()
            await self.transaction.start()
        await self.conn.execute(query, *args)

    async def commit(self) -> None:
        await self.transaction.commit()
        self.transaction = None

    async def rollback(self) -> None:
        await self.transaction.rollback()
        self.transaction = None


async def until_waiting_or_done(observer: asyncpg.Pool, actor: Actor) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_SECONDS
    assert actor.task is not None
    while loop.time() < deadline:
        if actor.task.done():
            return
        if actor.gpid is None:
            waiting = await observer.fetchval(
                "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", actor.pid
            )
        else:
            # On Citus the row lock is waited for on the worker holding the row; the
            # coordinator's session only waits for that worker's answer.
            waiting = await observer.fetchval(
                "SELECT EXISTS (SELECT 1 FROM citus_lock_waits WHERE waiting_gpid = $1)",
                actor.gpid,
            )
        if waiting:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{actor.name} neither finished nor waited for a lock")


@contextlib.asynccontextmanager
async def actors(dsn: str, *names: str) -> AsyncIterator[dict[str, Actor]]:
    """One single-connection session per name (UTC, like the service's pool)."""
    made: dict[str, Actor] = {}
    try:
        for name in names:
            pool = await asyncpg.create_pool(
                dsn, min_size=1, max_size=1, server_settings={"timezone": "UTC"}
            )
            pid = await pool.fetchval("SELECT pg_backend_pid()")
            gpid = (
                await pool.fetchval("SELECT citus_backend_gpid()") if await is_citus(pool) else None
            )
            made[name] = Actor(name=name, pool=pool, pid=pid, db=Database(pool), gpid=gpid)
        yield made
    finally:
        for actor in made.values():
            if actor.task is not None and not actor.task.done():
                actor.task.cancel()
                with contextlib.suppress(BaseException):
                    await actor.task
            await actor.pool.close()


@contextlib.asynccontextmanager
async def holder(dsn: str) -> AsyncIterator[Holder]:
    conn = await asyncpg.connect(dsn)
    try:
        yield Holder(conn)
    finally:
        await conn.close()


def is_deadlock(outcome: Any) -> bool:
    return isinstance(outcome, asyncpg.DeadlockDetectedError)
