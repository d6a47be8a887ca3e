"""What a waiting duplicate costs the database.

A duplicate of a request still running in the same process waits for it in memory: a
couple of statements in all, however long the first request runs (it used to try to reserve
the key and read it again every ≤ 100 ms: about twenty statements a second for up to 10 s).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from inbox_allocation.db.pool import Database
from inbox_allocation.db.seed_ids import ACME_OP4
from inbox_allocation.sql import idempotency as sql
from tests.support.http import headers


async def test_a_waiting_duplicate_does_not_poll_the_database(
    client: httpx.AsyncClient, app: FastAPI, db: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    database: Database = app.state.db
    key_statements: list[str] = []
    for method in ("fetchval", "fetchrow", "execute"):
        real = getattr(database, method)

        async def counted(query: str, *args: object, _real: Any = real) -> Any:
            if query in (sql.RESERVE, sql.FIND):
                key_statements.append(query)
            return await _real(query, *args)

        monkeypatch.setattr(database, method, counted)
    key = headers(ACME_OP4, **{"Idempotency-Key": "held"})
    async with db.acquire() as holder, holder.transaction():
        # The first /allocate waits for this lock (the caller's status row) for 1.5 s.
        await holder.execute("SELECT 1 FROM operator_status WHERE operator_id = $1 FOR UPDATE",
                             uuid.UUID(ACME_OP4))  # fmt: skip
        first = asyncio.create_task(client.post("/api/v1/allocate", headers=key))
        for _ in range(500):  # until the first request owns the key
            if await db.fetchval("SELECT count(*) FROM idempotency_keys WHERE key = 'held'"):
                break
            await asyncio.sleep(0.01)
        before = len(key_statements)
        duplicate = asyncio.create_task(client.post("/api/v1/allocate", headers=key))
        await asyncio.sleep(1.5)
        during_wait = len(key_statements) - before
    answers = [await first, await duplicate]
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    assert answers[1].headers["Idempotent-Replayed"] == "true"
    # The duplicate: one reservation attempt and one read, then nothing while it waits.
    assert during_wait <= 2, during_wait
    assert len(key_statements) - before <= 3  # and one read after the first settled
