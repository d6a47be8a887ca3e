"""API tokens: issuing, listing, revoking (routes and CLI), and how token mode uses them.

- A token is `iat_` + 43 base64url characters, shown once; only its SHA-256 is stored (not
  even an idempotent replay keeps it); GET never shows it.
- ADMIN on any operator of its tenant, any operator on itself, else 403; another tenant's
  operator is 404.
- Revocation and operator deletion refuse the token within a second — on every app instance
  (two "replicas", each with its own pool and its own cache of verified tokens, both of
  which used the token just before), and at once on an instance that had not cached it.
- Identity headers that contradict the token are 401; last_used_at is written on use but not
  on every request; the token never reaches the logs.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from structlog.testing import capture_logs

from inbox_allocation.config import Settings
from inbox_allocation.db.pool import Database
from inbox_allocation.db.seed_ids import (
    ACME,
    ACME_ADMIN,
    ACME_MANAGER,
    ACME_OP4,
    ACME_OP5,
    TECH_OP14,
    TECHSTART,
)
from inbox_allocation.domain.errors import Unauthorized
from inbox_allocation.services.tokens import TokenAuthenticator
from tests.support.auth import (
    bearer,
    http_client,
    running_app,
    seed_token,
    seed_token_id,
    token_hash,
)
from tests.support.http import headers
from tests.support.route_catalog import error_code, outcome
from tests.system.test_cli_tenant import cli

TOKEN_FORMAT = re.compile(r"iat_[A-Za-z0-9_-]{43}")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def token_app(settings: Settings) -> AsyncIterator[FastAPI]:
    async with running_app(settings, auth_mode="token") as application:
        yield application


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def replica(settings: Settings) -> AsyncIterator[FastAPI]:
    """A second token-mode app with its own pool: another replica of the service."""
    async with running_app(settings, auth_mode="token") as application:
        yield application


@pytest_asyncio.fixture(loop_scope="session")
async def tc(token_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(token_app) as http:
        yield http


def tokens_path(operator: str) -> str:
    return f"/api/v1/operators/{operator}/tokens"


async def issue(
    client: httpx.AsyncClient, operator: str, caller: str = ACME_ADMIN, **body: object
) -> dict[str, str]:
    response = await client.post(
        tokens_path(operator), headers=headers(caller), json={"name": "laptop", **body}
    )
    assert response.status_code == 201, outcome(response)
    data: dict[str, str] = response.json()["data"]
    return data


# --- issuing and listing (headers mode: the routes exist in every mode) ----------------------


async def test_issue_shows_the_token_once_and_stores_only_its_hash(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    created = await issue(client, ACME_OP4, expires_in_days=90)
    assert set(created) == {"id", "name", "token", "created_at", "expires_at"}
    assert TOKEN_FORMAT.fullmatch(created["token"])
    assert created["name"] == "laptop"
    lifetime = datetime.fromisoformat(created["expires_at"]) - datetime.fromisoformat(
        created["created_at"]
    )
    assert lifetime.days == 90

    row = await db.fetchrow("SELECT * FROM api_tokens WHERE id = $1", uuid.UUID(created["id"]))
    assert row is not None
    assert bytes(row["token_hash"]) == hashlib.sha256(created["token"].encode()).digest()
    # The secret is in no column of any table.
    dump = await db.fetchval("SELECT string_agg(t::text, ' ') FROM api_tokens t")
    assert created["token"] not in dump
    assert created["token"][4:] not in dump

    listed = await client.get(tokens_path(ACME_OP4), headers=headers(ACME_OP4))
    assert listed.status_code == 200
    items = listed.json()["data"]
    mine = next(item for item in items if item["id"] == created["id"])
    assert set(mine) == {"id", "name", "created_at", "expires_at", "last_used_at", "revoked_at"}
    assert mine["revoked_at"] is None
    assert mine["last_used_at"] is None
    assert created["token"] not in listed.text
    assert [item["id"] for item in items] == [created["id"], seed_token_id(ACME_OP4)]


async def test_issuing_is_never_stored_for_idempotent_replay(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    sent = headers(ACME_OP4, **{"Idempotency-Key": "token-1"})
    first = await client.post(tokens_path(ACME_OP4), headers=sent, json={"name": "a"})
    second = await client.post(tokens_path(ACME_OP4), headers=sent, json={"name": "a"})
    assert first.status_code == second.status_code == 201
    assert first.json()["data"]["token"] != second.json()["data"]["token"]
    assert "idempotent-replayed" not in second.headers
    assert await db.fetchval("SELECT count(*) FROM idempotency_keys") == 0


async def test_a_token_without_expiry(client: httpx.AsyncClient) -> None:
    created = await issue(client, ACME_OP5, caller=ACME_OP5)
    assert created["expires_at"] is None


@pytest.mark.parametrize(
    "body",
    [{}, {"name": None}, {"name": ""}, {"name": "x" * 101}, {"name": "a", "expires_in_days": 0},
     {"name": "a", "expires_in_days": 3651}],
    ids=["no name", "null name", "empty name", "101 chars", "0 days", "3651 days"],
)  # fmt: skip
async def test_invalid_bodies(client: httpx.AsyncClient, db: asyncpg.Pool, body: object) -> None:
    response = await client.post(tokens_path(ACME_OP4), headers=headers(ACME_OP4), json=body)
    assert (response.status_code, error_code(response)) == (400, "VALIDATION_ERROR"), outcome(
        response
    )
    assert await db.fetchval("SELECT count(*) FROM api_tokens WHERE name <> 'seed'") == 0


async def test_who_may_manage_whose_tokens(client: httpx.AsyncClient) -> None:
    # An OPERATOR or MANAGER on another operator: 403 (existing or not); ADMIN across
    # tenants: 404, like a missing operator.
    for caller, target in ((ACME_OP4, ACME_OP5), (ACME_MANAGER, ACME_OP4), (ACME_OP4, TECH_OP14)):
        for method in ("GET", "POST"):
            response = await client.request(
                method, tokens_path(target), headers=headers(caller), json={"name": "x"}
            )
            assert (response.status_code, error_code(response)) == (403, "FORBIDDEN")
        revoke = await client.delete(
            f"{tokens_path(target)}/{seed_token_id(target)}", headers=headers(caller)
        )
        assert (revoke.status_code, error_code(revoke)) == (403, "FORBIDDEN")
    for target in (TECH_OP14, str(uuid.uuid4())):
        response = await client.get(tokens_path(target), headers=headers(ACME_ADMIN))
        assert (response.status_code, error_code(response)) == (404, "NOT_FOUND")
    missing = await client.delete(
        f"{tokens_path(ACME_OP4)}/{uuid.uuid4()}", headers=headers(ACME_ADMIN)
    )
    assert (missing.status_code, error_code(missing)) == (404, "NOT_FOUND")
    malformed = await client.delete(f"{tokens_path(ACME_OP4)}/nope", headers=headers(ACME_OP4))
    assert malformed.status_code == 400


# --- token mode -----------------------------------------------------------------------------


async def refused_within_a_second(http: httpx.AsyncClient, credentials: dict[str, str]) -> None:
    """The token is refused (401) within the 1 s the revocation rule allows: a replica may
    answer from its cache of verified tokens until its next re-check (tokens.CACHE_SECONDS)."""
    for _ in range(20):
        response = await http.get("/api/v1/operator/status", headers=credentials)
        if response.status_code == 401:
            break
        assert response.status_code == 200, outcome(response)
        await asyncio.sleep(0.05)
    assert (response.status_code, error_code(response)) == (401, "UNAUTHORIZED")
    assert response.headers["www-authenticate"] == "Bearer"


async def test_a_new_token_works_and_revocation_reaches_every_replica(
    tc: httpx.AsyncClient, replica: FastAPI
) -> None:
    admin = bearer(seed_token(ACME_ADMIN))
    created = (await tc.post(tokens_path(ACME_OP4), headers=admin, json={"name": "phone"})).json()[
        "data"
    ]
    mine = bearer(created["token"])
    async with http_client(replica) as other:
        on_replica = await other.get("/api/v1/operator/status", headers=mine)
        assert on_replica.status_code == 200, outcome(on_replica)
        assert on_replica.json()["data"]["operator_id"] == ACME_OP4

        # Revoked through the first replica by the operator itself ...
        revoked = await tc.delete(f"{tokens_path(ACME_OP4)}/{created['id']}", headers=mine)
        assert revoked.status_code == 200, outcome(revoked)
        assert revoked.json()["data"]["revoked_at"] is not None
        # ... and refused by both within a second (both had just verified and cached it).
        for http in (tc, other):
            await refused_within_a_second(http, mine)
        # Revoking again: 200, same instant; the listing shows it revoked.
        again = await tc.delete(f"{tokens_path(ACME_OP4)}/{created['id']}", headers=admin)
        assert again.json()["data"]["revoked_at"] == revoked.json()["data"]["revoked_at"]
        listed = await other.get(tokens_path(ACME_OP4), headers=admin)
        entry = next(item for item in listed.json()["data"] if item["id"] == created["id"])
        assert entry["revoked_at"] == revoked.json()["data"]["revoked_at"]


async def test_deleting_an_operator_revokes_its_tokens(
    tc: httpx.AsyncClient, replica: FastAPI, db: asyncpg.Pool
) -> None:
    op5 = bearer(seed_token(ACME_OP5))
    assert (await tc.get("/api/v1/operator/status", headers=op5)).status_code == 200
    deleted = await tc.delete(
        f"/api/v1/operators/{ACME_OP5}", headers=bearer(seed_token(ACME_ADMIN))
    )
    assert deleted.status_code == 204, outcome(deleted)
    async with http_client(replica) as other:
        for http in (tc, other):
            await refused_within_a_second(http, op5)
    left = await db.fetchval(
        "SELECT (SELECT count(*) FROM api_tokens WHERE operator_id = $1::uuid)"
        " + (SELECT count(*) FROM api_token_lookup WHERE operator_id = $1::uuid)",
        ACME_OP5,
    )
    assert left == 0


async def test_expired_token(tc: httpx.AsyncClient, db: asyncpg.Pool) -> None:
    await db.execute(
        "UPDATE api_token_lookup SET expires_at = now() - interval '1 second'"
        " WHERE operator_id = $1::uuid",
        ACME_OP4,
    )
    response = await tc.get("/api/v1/operator/status", headers=bearer(seed_token(ACME_OP4)))
    assert (response.status_code, error_code(response)) == (401, "UNAUTHORIZED")
    assert "expired" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("tenant", "operator"),
    [(TECHSTART, None), (None, ACME_OP5), (TECHSTART, TECH_OP14), ("not-a-uuid", None),
     (None, "")],
    ids=["other tenant", "other operator", "other identity", "malformed tenant", "empty operator"],
)  # fmt: skip
async def test_identity_headers_must_match_the_token(
    tc: httpx.AsyncClient, tenant: str | None, operator: str | None
) -> None:
    sent = bearer(seed_token(ACME_OP4))
    if tenant is not None:
        sent["X-Tenant-ID"] = tenant
    if operator is not None:
        sent["X-Operator-ID"] = operator
    response = await tc.get("/api/v1/operator/status", headers=sent)
    assert (response.status_code, error_code(response)) == (401, "UNAUTHORIZED")
    assert response.headers["www-authenticate"] == "Bearer"
    # The same headers naming the token's own identity are fine.
    matching = await tc.get(
        "/api/v1/operator/status", headers={**bearer(seed_token(ACME_OP4)), **headers(ACME_OP4)}
    )
    assert matching.status_code == 200


async def test_two_authorization_headers_are_refused(tc: httpx.AsyncClient) -> None:
    response = await tc.get(
        "/api/v1/operator/status",
        headers=[("Authorization", f"Bearer {seed_token(ACME_OP4)}"),
                 ("Authorization", f"Bearer {seed_token(ACME_ADMIN)}")],
    )  # fmt: skip
    assert (response.status_code, error_code(response)) == (401, "UNAUTHORIZED")


async def test_last_used_at_is_written_on_use_but_not_per_request(
    tc: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    admin = bearer(seed_token(ACME_ADMIN))
    fresh = (await tc.post(tokens_path(ACME_OP4), headers=admin, json={"name": "n"})).json()
    token_id, token = fresh["data"]["id"], fresh["data"]["token"]

    async def last_used() -> object:
        return await db.fetchval(
            "SELECT last_used_at FROM api_tokens WHERE id = $1", uuid.UUID(token_id)
        )

    assert await last_used() is None
    first = await tc.get("/api/v1/operator/status", headers=bearer(token))
    assert first.status_code == 200
    stamped = await last_used()
    assert stamped is not None
    for _ in range(5):
        assert (await tc.get("/api/v1/operator/status", headers=bearer(token))).status_code == 200
    assert await last_used() == stamped  # within the minute: not written again


async def test_tokens_never_reach_the_logs(tc: httpx.AsyncClient) -> None:
    good, unknown = seed_token(ACME_OP4), "iat_" + "B" * 43
    with capture_logs() as events:
        await tc.get("/api/v1/operator/status", headers=bearer(good))
        await tc.get("/api/v1/operator/status", headers=bearer(unknown))
        await tc.get("/api/v1/operator/status", headers={"Authorization": f"Basic {good}"})
        await tc.post(tokens_path(ACME_OP4), headers=bearer(good), json={"name": "x"})
        await tc.post(tokens_path(ACME_OP4), headers=bearer(good), content=b'{"broken')
    assert events
    text = repr(events)
    for secret in (good, unknown, good[4:], unknown[4:]):
        assert secret not in text


# --- the CLI --------------------------------------------------------------------------------


def test_cli_token_create(dsn: str) -> None:
    result = cli("token", "create", "--tenant-id", ACME, "--operator-id", ACME_OP4,
                 "--name", "bootstrap", DATABASE_URL=dsn)  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    printed = json.loads(lines[0])
    assert set(printed) == {"token_id", "token"}
    assert TOKEN_FORMAT.fullmatch(printed["token"])


async def test_cli_token_works_in_token_mode(tc: httpx.AsyncClient, dsn: str) -> None:
    result = cli("token", "create", "--tenant-id", ACME, "--operator-id", ACME_MANAGER,
                 DATABASE_URL=dsn)  # fmt: skip
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    response = await tc.get("/api/v1/operator/status", headers=bearer(printed["token"]))
    assert response.status_code == 200
    assert response.json()["data"]["operator_id"] == ACME_MANAGER


@pytest.mark.parametrize("operator", [TECH_OP14, str(uuid.uuid4())], ids=["other tenant", "none"])
def test_cli_refuses_an_operator_outside_the_tenant(dsn: str, operator: str) -> None:
    result = cli("token", "create", "--tenant-id", ACME, "--operator-id", operator,
                 DATABASE_URL=dsn)  # fmt: skip
    assert result.returncode == 1
    assert result.stdout == ""
    assert "not in tenant" in result.stderr


@pytest.mark.no_db
def test_cli_refuses_a_malformed_id(dsn: str) -> None:
    result = cli("token", "create", "--tenant-id", "x", "--operator-id", ACME_OP4,
                 DATABASE_URL=dsn)  # fmt: skip
    assert result.returncode == 2
    assert result.stdout == ""


async def test_a_refused_request_does_not_count_as_a_use(
    tc: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    admin = bearer(seed_token(ACME_ADMIN))
    fresh = (await tc.post(tokens_path(ACME_OP4), headers=admin, json={"name": "n"})).json()
    token_id, token = fresh["data"]["id"], fresh["data"]["token"]
    contradicted = await tc.get(
        "/api/v1/operator/status", headers={**bearer(token), "X-Tenant-ID": TECHSTART}
    )
    assert contradicted.status_code == 401
    used = await db.fetchval(
        "SELECT last_used_at FROM api_tokens WHERE id = $1", uuid.UUID(token_id)
    )
    assert used is None


async def test_a_cached_token_skips_the_lookup_and_is_rechecked(db: asyncpg.Pool) -> None:
    """A process answers a token it verified from its cache (no statement per request) and
    re-checks the cache against the database once `cache_seconds` passed: a token whose
    lookup row is gone (revoked) is refused from that re-check on."""
    database = Database(db)
    statements: list[str] = []
    for method in ("fetch", "fetchrow"):
        real = getattr(database, method)

        async def counted(query: str, *args: object, _real: Any = real) -> Any:
            statements.append(query)
            return await _real(query, *args)

        setattr(database, method, counted)
    authenticator = TokenAuthenticator(cache_seconds=0.3)
    token = seed_token(ACME_OP4)
    owner = await authenticator.authenticate(database, token)
    assert str(owner.operator_id) == ACME_OP4
    first = len(statements)
    assert first == 1  # the lookup
    for _ in range(50):
        assert (await authenticator.authenticate(database, token)) == owner
    assert len(statements) == first  # all from the cache (well within 0.3 s)

    await db.execute("DELETE FROM api_token_lookup WHERE token_hash = $1", token_hash(token))
    await asyncio.sleep(0.35)
    with pytest.raises(Unauthorized):
        await authenticator.authenticate(database, token)
    assert len(statements) == first + 2  # the re-check, then the (failed) lookup
