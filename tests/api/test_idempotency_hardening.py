"""Idempotency keys that cannot be poisoned, lost or run twice.

- A request refused before it runs (body over 1 MiB, chunked or not; a client gone mid-upload;
  a body that is not JSON) never reserves or stores its key: the corrected retry runs.
- An empty, repeated or non-ASCII key is 400 VALIDATION_ERROR.
- A request whose writes committed but which answered 503 (the COMMIT's reply was lost) is
  never executed again by its retry.
- A duplicate never takes over a request that is still running, however long it runs.
- Backends of the service terminated again and again while clients retry with their keys:
  no 500, no double execution, no reservation left behind.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from inbox_allocation.app import create_app
from inbox_allocation.config import Settings
from inbox_allocation.db.seed_ids import ACME, ACME_MANAGER, ACME_OP4, INBOX_SALES, conversation
from inbox_allocation.services import idempotency as service
from tests.support.helpers import is_citus
from tests.support.http import headers
from tests.support.pg_proxy import PgProxy

ONE_MIB = 1024 * 1024


async def _rows(db: asyncpg.Pool, key: str) -> int:
    return int(await db.fetchval("SELECT count(*) FROM idempotency_keys WHERE key = $1", key))


async def _allocated_to(db: asyncpg.Pool, operator: str) -> int:
    count = await db.fetchval(
        "SELECT count(*) FROM conversation_refs WHERE assigned_operator_id = $1",
        uuid.UUID(operator),
    )
    return int(count)


def _claim(key: str) -> dict[str, str]:
    return headers(ACME_OP4, **{"Idempotency-Key": key})


CLAIM_BODY = {"conversation_id": conversation(1)}


async def test_an_oversized_chunked_body_is_413_and_stores_nothing(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it streams
        for _ in range(3):
            yield b" " * ONE_MIB

    response = await client.post("/api/v1/claim", headers=_claim("big"), content=chunks())
    assert (response.status_code, response.json()["error"]["code"]) == (413, "PAYLOAD_TOO_LARGE")
    declared = await client.post("/api/v1/claim", headers=_claim("big"),
                                 content=b" " * (ONE_MIB + 1))  # fmt: skip
    assert declared.status_code == 413
    assert await _rows(db, "big") == 0
    retry = await client.post("/api/v1/claim", headers=_claim("big"), json=CLAIM_BODY)
    assert retry.status_code == 200, retry.text


async def test_malformed_json_does_not_poison_the_key(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    broken = await client.post("/api/v1/claim", headers=_claim("k-json"),
                               content=b'{"conversation_id": ')  # fmt: skip
    assert (broken.status_code, broken.json()["error"]["code"]) == (400, "BAD_REQUEST")
    assert await _rows(db, "k-json") == 0
    corrected = await client.post("/api/v1/claim", headers=_claim("k-json"), json=CLAIM_BODY)
    assert corrected.status_code == 200, corrected.text
    replay = await client.post("/api/v1/claim", headers=_claim("k-json"), json=CLAIM_BODY)
    assert replay.headers["Idempotent-Replayed"] == "true"


async def test_a_client_gone_mid_upload_does_not_reserve_its_key(
    app: FastAPI, client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    """uvicorn reports a lost connection as `http.disconnect` while the body is read."""
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": b'{"conversation_id": "', "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    raw_headers = [(name.lower().encode(), value.encode())
                   for name, value in _claim("k-gone").items()]  # fmt: skip
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/api/v1/claim", "raw_path": b"/api/v1/claim",
        "query_string": b"", "root_path": "", "headers": raw_headers,
        "client": ("127.0.0.1", 1), "server": ("testserver", 80), "app": app,
        "state": {},
    }  # fmt: skip
    await app(scope, receive, send)
    assert await _rows(db, "k-gone") == 0
    retry = await client.post("/api/v1/claim", headers=_claim("k-gone"), json=CLAIM_BODY)
    assert retry.status_code == 200, retry.text


@pytest.mark.parametrize(
    "key_headers",
    [
        {"Idempotency-Key": ""},
        {"X-Idempotency-Key": ""},
        {"Idempotency-Key": "   "},
        {"Idempotency-Key": "clé".encode()},
    ],
)
async def test_bad_keys_are_refused(
    client: httpx.AsyncClient, db: asyncpg.Pool, key_headers: dict[str, str | bytes]
) -> None:
    raw = [(name.encode(), value if isinstance(value, bytes) else value.encode())
           for name, value in {**headers(ACME_OP4), **key_headers}.items()]  # fmt: skip
    response = await client.post("/api/v1/claim", headers=raw, json=CLAIM_BODY)
    assert (response.status_code, response.json()["error"]["code"]) == (400, "VALIDATION_ERROR")
    assert await db.fetchval("SELECT count(*) FROM idempotency_keys") == 0
    state = await db.fetchval("SELECT state::text FROM conversation_refs WHERE id = $1",
                              uuid.UUID(conversation(1)))  # fmt: skip
    assert state == "QUEUED"


async def test_a_repeated_key_header_with_two_values_is_refused(
    client: httpx.AsyncClient,
) -> None:
    raw = [*headers(ACME_OP4).items(), ("Idempotency-Key", "a"), ("Idempotency-Key", "b")]
    response = await client.post("/api/v1/claim", headers=raw, json=CLAIM_BODY)
    assert (response.status_code, response.json()["error"]["code"]) == (400, "VALIDATION_ERROR")


async def test_idempotency_key_wins_over_the_older_header(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    both = {"Idempotency-Key": "new-name", "X-Idempotency-Key": "old-name"}
    response = await client.post(
        "/api/v1/claim", headers={**headers(ACME_OP4), **both}, json=CLAIM_BODY
    )
    assert response.status_code == 200
    assert await _rows(db, "new-name") == 1
    assert await _rows(db, "old-name") == 0


# --- a committed request that answered 503 -------------------------------------------------


@pytest_asyncio.fixture(loop_scope="session")
async def proxied(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, PgProxy]]:
    """The service reaching PostgreSQL through a proxy that can lose a reply."""
    assert settings.database_url is not None
    proxy = await PgProxy(settings.database_url).start()
    proxied_settings = Settings.model_validate(
        {**settings.model_dump(), "database_url": proxy.dsn, "db_min_conns": 1,
         "db_max_conns": 4}
    )  # fmt: skip
    application = create_app(proxied_settings)
    try:
        async with application.router.lifespan_context(application):
            await asyncio.sleep(0.5)  # the workers' first runs (queue aging) are over
            transport = httpx.ASGITransport(app=application)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                yield http, proxy
    finally:
        await proxy.close()


async def test_a_request_that_committed_but_answered_503_is_not_run_again(
    proxied: tuple[httpx.AsyncClient, PgProxy], db: asyncpg.Pool
) -> None:
    http, proxy = proxied
    before = await _allocated_to(db, ACME_OP4)
    key = headers(ACME_OP4, **{"Idempotency-Key": "lost-reply"})
    proxy.lose_reply_to(b"COMMIT")  # the allocation commits; its client never hears it
    first = await http.post("/api/v1/allocate", headers=key)
    assert proxy.lost_replies == 1, first.text
    assert (first.status_code, first.json()["error"]["code"]) == (503, "DB_UNAVAILABLE")
    assert await _allocated_to(db, ACME_OP4) == before + 1  # it did commit

    for _ in range(2):
        retry = await http.post("/api/v1/allocate", headers=key)
        assert (retry.status_code, retry.json()["error"]["code"]) == (409, "CONFLICT")
        assert retry.headers["Idempotent-Replayed"] == "true"
    assert await _allocated_to(db, ACME_OP4) == before + 1  # never a second allocation


async def test_a_request_rolled_back_when_its_connection_died_runs_on_retry(
    proxied: tuple[httpx.AsyncClient, PgProxy], db: asyncpg.Pool
) -> None:
    """The reply to the allocation statement is lost before COMMIT: rolled back, retried by
    the route on a fresh connection, answered once."""
    http, proxy = proxied
    before = await _allocated_to(db, ACME_OP4)
    key = headers(ACME_OP4, **{"Idempotency-Key": "lost-statement"})
    proxy.lose_reply_to(b"conversation_refs")
    first = await http.post("/api/v1/allocate", headers=key)
    assert proxy.lost_replies == 1
    assert first.status_code == 200, first.text
    assert await _allocated_to(db, ACME_OP4) == before + 1
    replay = await http.post("/api/v1/allocate", headers=key)
    assert replay.content == first.content


# --- a long request is never taken over -----------------------------------------------------


async def test_a_duplicate_never_takes_over_a_running_request(
    client: httpx.AsyncClient, db: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Abandonment shortened to 1 s, heartbeats every 0.2 s: the first request runs for 1.5 s
    (waiting for a row lock), the duplicate arrives after 1.2 s, when the reservation is older
    than the abandonment age; it must wait for the first and replay it."""
    monkeypatch.setattr(service, "ABANDONED_AFTER_SECONDS", 1.0)
    monkeypatch.setattr(service, "HEARTBEAT_SECONDS", 0.2, raising=False)
    before = await _allocated_to(db, ACME_OP4)
    key = headers(ACME_OP4, **{"Idempotency-Key": "slow"})
    async with db.acquire() as holder, holder.transaction():
        await holder.execute(
            "SELECT 1 FROM operator_status WHERE tenant_id = $1 AND operator_id = $2 FOR UPDATE",
            uuid.UUID(ACME), uuid.UUID(ACME_OP4),
        )  # fmt: skip
        first = asyncio.create_task(client.post("/api/v1/allocate", headers=key))
        await asyncio.sleep(1.2)
        duplicate = asyncio.create_task(client.post("/api/v1/allocate", headers=key))
        await asyncio.sleep(0.3)
    answers = [await first, await duplicate]
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    assert answers[1].headers["Idempotent-Replayed"] == "true"
    assert answers[1].content == answers[0].content
    assert await _allocated_to(db, ACME_OP4) == before + 1


# --- backends terminated under retrying clients ----------------------------------------------


async def test_terminated_backends_under_retrying_clients(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    """Eight clients each create labels, every request with its own key, retrying a 503 with
    the same key; meanwhile every backend of the service is terminated every 150 ms. A second
    execution of a key would answer 409 LABEL_NAME_CONFLICT (its label exists already).
    On Citus every request costs several round trips more (coordinator to worker), so the
    terminations come every 600 ms there: at 150 ms hardly any request would get through."""
    stop = asyncio.Event()
    interval = 0.6 if await is_citus(db) else 0.15

    async def terminator() -> int:
        kills = 0
        while not stop.is_set():
            kills += int(await db.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = 'inbox-allocation'"
            ))  # fmt: skip
            await asyncio.sleep(interval)
        return kills

    finals: dict[str, httpx.Response] = {}
    statuses: list[int] = []

    async def worker(number: int) -> None:
        for round_ in range(6):
            name = f"w{number}-r{round_}"
            request_headers = headers(ACME_MANAGER, **{"Idempotency-Key": name})
            for _ in range(40):
                body = {"inbox_id": INBOX_SALES, "name": name}
                response = await client.post("/api/v1/labels", headers=request_headers, json=body)
                statuses.append(response.status_code)
                if response.status_code != 503:
                    break
                await asyncio.sleep(0.05)
            finals[name] = response

    killing = asyncio.create_task(terminator())
    await asyncio.gather(*(worker(n) for n in range(8)))
    stop.set()
    kills = await killing
    assert kills > 0
    assert all(status < 500 or status == 503 for status in statuses), statuses
    codes = {name: (r.status_code, r.json().get("error", {}).get("code"))
             for name, r in finals.items()}  # fmt: skip
    # Every key ends with its one execution's answer (201), or, when that execution's reply
    # was lost after its commit, with "applied, response lost" (409 CONFLICT).
    assert all(code in {(201, None), (409, "CONFLICT")} for code in codes.values()), codes
    created = await db.fetch(
        "SELECT name, count(*) AS n FROM labels WHERE name LIKE 'w%-r%' GROUP BY name"
    )
    assert {row["name"]: row["n"] for row in created} == dict.fromkeys(finals, 1)
    stuck = await db.fetchval("SELECT count(*) FROM idempotency_keys WHERE response_status IS NULL")
    assert stuck == 0


async def test_a_405_is_not_stored_so_every_answer_carries_allow(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    key = headers(ACME_OP4, **{"Idempotency-Key": "wrong-method"})
    for _ in range(2):
        response = await client.put("/api/v1/allocate", headers=key)
        assert response.status_code == 405
        assert response.headers["Allow"] == "POST"
        assert "Idempotent-Replayed" not in response.headers
    assert await _rows(db, "wrong-method") == 0
