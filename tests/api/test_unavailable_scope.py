"""503 DB_UNAVAILABLE is for the database's conditions only; a bug is a 500 with a trace.

Before, every OSError, TimeoutError, asyncpg InterfaceError and InternalClientError was
answered 503 app-wide: a file error, any timeout, or a connection used after it went back to
the pool was reported as "database unavailable, retry later" and never logged as an error.
Now only what a database call raises maps to 503 (a statement past the command timeout still
does); the rest reaches the generic 500.

The failing code runs in routes added to a real app for this test (the failures are real:
a real released pool connection, a real missing file, a real timeout).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest_asyncio
from fastapi import FastAPI, Request

from inbox_allocation.config import Settings
from inbox_allocation.db.pool import Database
from inbox_allocation.db.seed_ids import ACME_OP4
from tests.support.auth import http_client, running_app
from tests.support.http import headers
from tests.support.route_catalog import error_code, outcome


def _db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


async def _released_connection(request: Request) -> dict[str, int]:
    async with _db(request).connection() as conn:
        pass
    return {"value": await conn.fetchval("SELECT 1")}  # used after its release: a bug


def _missing_file(request: Request) -> dict[str, str]:  # sync: FastAPI runs it in a thread
    return {"text": Path("/nonexistent/inbox-allocation/config").read_text()}


async def _unrelated_timeout(request: Request) -> dict[str, str]:
    async with asyncio.timeout(0.01):
        await asyncio.sleep(1)
    return {}


async def _slow_statement(request: Request) -> dict[str, str]:
    await _db(request).fetchval("SELECT pg_sleep(3)")
    return {}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def faulty_app(settings: Settings) -> AsyncIterator[FastAPI]:
    # A one-second command timeout, so that the slow statement is cut short by it.
    async with running_app(settings, write_timeout=timedelta(seconds=1)) as application:
        for path, endpoint in (
            ("released-connection", _released_connection),
            ("missing-file", _missing_file),
            ("unrelated-timeout", _unrelated_timeout),
            ("slow-statement", _slow_statement),
        ):
            application.add_api_route(f"/api/v1/test-faults/{path}", endpoint, methods=["GET"])
        yield application


@pytest_asyncio.fixture(loop_scope="session")
async def faulty(faulty_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(faulty_app) as http:
        yield http


async def test_programming_errors_are_500_not_db_unavailable(faulty: httpx.AsyncClient) -> None:
    for path in ("released-connection", "missing-file", "unrelated-timeout"):
        response = await faulty.get(f"/api/v1/test-faults/{path}", headers=headers(ACME_OP4))
        assert (response.status_code, error_code(response)) == (500, "INTERNAL_ERROR"), (
            path,
            outcome(response),
        )
        assert "retry-after" not in response.headers


async def test_a_statement_past_the_command_timeout_is_still_503(
    faulty: httpx.AsyncClient,
) -> None:
    response = await faulty.get("/api/v1/test-faults/slow-statement", headers=headers(ACME_OP4))
    assert (response.status_code, error_code(response)) == (503, "DB_UNAVAILABLE"), outcome(
        response
    )
    assert response.headers["retry-after"] == "1"
