"""READ_TIMEOUT bounds how long a request body may take to arrive (it was accepted and
ignored): a client that trickles its body gets 408 REQUEST_TIMEOUT once READ_TIMEOUT has
passed since the body's first read, and an Idempotency-Key it sent is not reserved."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pytest_asyncio
from fastapi import FastAPI

from inbox_allocation.config import Settings
from inbox_allocation.db.seed_ids import ACME_OP4, conversation
from tests.support.auth import http_client, running_app
from tests.support.http import headers
from tests.support.route_catalog import error_code, outcome

STALL_SECONDS = 3.0


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def impatient_app(settings: Settings) -> AsyncIterator[FastAPI]:
    async with running_app(settings, read_timeout=timedelta(seconds=0.5)) as application:
        yield application


async def _trickled() -> AsyncIterator[bytes]:
    yield b'{"conversation_id": '
    await asyncio.sleep(STALL_SECONDS)  # a client that stalls mid-body
    yield f'"{conversation(1)}"}}'.encode()


async def test_a_trickled_body_is_408_and_reserves_no_key(
    impatient_app: FastAPI, db: asyncpg.Pool
) -> None:
    async with http_client(impatient_app) as http:
        for extra in ({}, {"Idempotency-Key": "slow-body"}):
            response = await asyncio.wait_for(
                http.post("/api/v1/claim", headers=headers(ACME_OP4, **extra), content=_trickled()),
                timeout=STALL_SECONDS - 1,  # answered before the body would have completed
            )
            assert (response.status_code, error_code(response)) == (408, "REQUEST_TIMEOUT"), (
                outcome(response)
            )
    assert await db.fetchval("SELECT count(*) FROM idempotency_keys") == 0
    state = await db.fetchval(
        "SELECT state::text FROM conversation_refs WHERE id = $1::uuid", conversation(1)
    )
    assert state == "QUEUED"


async def test_a_body_sent_in_time_is_served(impatient_app: FastAPI) -> None:
    async with http_client(impatient_app) as http:
        response = await http.post(
            "/api/v1/claim", headers=headers(ACME_OP4), json={"conversation_id": conversation(1)}
        )
    assert response.status_code == 200, outcome(response)


async def test_default_read_timeout_is_set(settings: Settings) -> None:
    assert settings.read_timeout == timedelta(seconds=15)
