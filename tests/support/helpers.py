"""Shared test helpers (plain functions; fixtures live in conftest.py)."""

from __future__ import annotations

import asyncpg


async def is_citus(db: asyncpg.Pool) -> bool:
    """Whether the database is a Citus coordinator (TEST_DB_ENGINE=citus)."""
    found: bool = await db.fetchval(
        "SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'citus')"
    )
    return found


async def lock_waiters(db: asyncpg.Pool, application_name: str = "inbox-allocation") -> int:
    """How many sessions of `application_name` are waiting for a lock.

    Plain PostgreSQL shows it in pg_stat_activity. On Citus the waiting happens on the node
    that holds the rows (a worker; every node for a reference table) while the coordinator's
    session only shows that it waits for that node, so the count comes from
    citus_lock_waits, the cluster-wide wait graph, which names sessions by global pid.
    """
    if await is_citus(db):
        query = (
            "SELECT count(DISTINCT w.waiting_gpid) FROM citus_lock_waits w "
            "JOIN citus_stat_activity a ON a.global_pid = w.waiting_gpid "
            "WHERE a.application_name = $1"
        )
    else:
        query = (
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE application_name = $1 AND wait_event_type = 'Lock'"
        )
    count: int = await db.fetchval(query, application_name)
    return count
