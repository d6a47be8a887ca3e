"""AUTH_MODE=token on every /api/v1 route.

- The tenant-isolation walk and the role matrix run again with API tokens: the same test
  functions (imported below), with `client` replaced by an app in token mode whose requests
  carry the seeded operator's token instead of identity headers (tests.support.auth). A
  foreign identity (TechStart's operator naming Acme) keeps its contradicting headers and
  must get 401.
- Every route refuses a missing, malformed, unknown, revoked or expired token with 401
  UNAUTHORIZED and `WWW-Authenticate: Bearer`, and changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from inbox_allocation.config import Settings
from inbox_allocation.db.seed_ids import ACME, ACME_ADMIN, ACME_MANAGER, ACME_OP4

# Collected again here, so they run against this module's `client` (token mode).
from tests.api.test_role_matrix import test_role_matrix, test_subscription_rules
from tests.api.test_tenant_isolation import (
    test_idempotency_key_never_replays_across_tenants,
    test_ids_of_another_tenant_look_missing,
    test_operator_of_another_tenant_is_unauthorized,
)
from tests.support.auth import (
    bearer,
    bearer_from_identity,
    http_client,
    running_app,
    seed_token,
    seeded_owners,
)
from tests.support.route_catalog import (
    ROUTE_IDS,
    ROUTES,
    Call,
    Route,
    diff,
    error_code,
    outcome,
    send,
    snapshot_all,
)

__all__ = [
    "test_idempotency_key_never_replays_across_tenants",
    "test_ids_of_another_tenant_look_missing",
    "test_operator_of_another_tenant_is_unauthorized",
    "test_role_matrix",
    "test_subscription_rules",
]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def token_app(settings: Settings) -> AsyncIterator[FastAPI]:
    async with running_app(settings, auth_mode="token") as application:
        yield application


@pytest_asyncio.fixture(loop_scope="session")
async def client(token_app: FastAPI, db: asyncpg.Pool) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(token_app, bearer_from_identity(await seeded_owners(db))) as http:
        yield http


@pytest_asyncio.fixture(loop_scope="session")
async def raw_client(token_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Token mode, requests sent exactly as written."""
    async with http_client(token_app) as http:
        yield http


def _malformed() -> list[dict[str, str]]:
    token = seed_token(ACME_ADMIN)
    return [
        {"Authorization": token},  # no scheme
        {"Authorization": f"Basic {token}"},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer iat_short"},
        {"Authorization": f"Bearer {token}x"},
        {"Authorization": f"Bearer {token[:-1]}!"},
    ]


async def _credential_cases(db: asyncpg.Pool) -> dict[str, list[dict[str, str]]]:
    """Header sets that must all be refused. Revoked and expired: ACME_OP4's and
    ACME_MANAGER's seeded tokens, changed directly in the database."""
    revoked, expired = seed_token(ACME_OP4), seed_token(ACME_MANAGER)
    await db.execute(
        """WITH r AS (UPDATE api_tokens SET revoked_at = now()
                      WHERE operator_id = $1::uuid RETURNING token_hash)
           DELETE FROM api_token_lookup l USING r WHERE l.token_hash = r.token_hash""",
        ACME_OP4,
    )
    past = datetime.now(UTC) - timedelta(seconds=1)
    await db.execute(
        "UPDATE api_token_lookup SET expires_at = $2 WHERE operator_id = $1::uuid",
        ACME_MANAGER,
        past,
    )
    return {
        "missing": [{}],
        "malformed": _malformed(),
        "unknown": [bearer("iat_" + "A" * 43), bearer("iat_" + uuid.uuid4().hex + "x" * 11)],
        "revoked": [bearer(revoked)],
        "expired": [bearer(expired)],
        # Identity headers alone are not credentials in token mode.
        "headers only": [{"X-Tenant-ID": ACME,
                          "X-Operator-ID": ACME_ADMIN}],
    }  # fmt: skip


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
async def test_bad_credentials_are_401_on_every_route(
    raw_client: httpx.AsyncClient, db: asyncpg.Pool, route: Route
) -> None:
    cases = await _credential_cases(db)
    before = await snapshot_all(db)
    problems = []
    for name, header_sets in cases.items():
        for sent in header_sets:
            response = await send(
                raw_client, route.call, operator=None, tenant=None, extra_headers=sent,
                idempotency_key=f"auth-{uuid.uuid4()}",
            )  # fmt: skip
            if (response.status_code, error_code(response)) != (
                401,
                "UNAUTHORIZED",
            ) or response.headers.get("www-authenticate") != "Bearer":
                problems.append(f"{name} {sent}: {outcome(response)}")
    assert not problems, f"{route.call.describe()}\n" + "\n".join(problems)
    assert not diff(before, await snapshot_all(db)), "a refused request changed rows"


async def test_the_walks_authenticate_by_token_alone(client: httpx.AsyncClient) -> None:
    response = await send(client, Call("GET", "/api/v1/operator/status"), operator=ACME_OP4)
    assert response.status_code == 200, outcome(response)
    assert response.json()["data"]["operator_id"] == ACME_OP4
    assert "x-operator-id" not in response.request.headers
    assert "x-tenant-id" not in response.request.headers
    assert response.request.headers["authorization"] == f"Bearer {seed_token(ACME_OP4)}"
