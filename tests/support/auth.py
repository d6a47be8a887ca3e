"""API tokens and JWTs for the tests: deterministic tokens for every seeded operator, apps
in other AUTH_MODEs, and an httpx hook that turns identity headers into a bearer token.

Test-only SQL lives here (the service's own statements are in inbox_allocation.sql).
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
from fastapi import FastAPI

from inbox_allocation.api.auth import AuthenticationMiddleware
from inbox_allocation.app import create_app
from inbox_allocation.config import Settings
from inbox_allocation.db.pool import Connection

_TOKEN_IDS = uuid.UUID("5eed0000-0000-4000-8000-000000000000")

# Every seeded operator gets one token, so tests in AUTH_MODE=token can act as any of them.
_INSERT_SEED_TOKENS = """
WITH seeded AS (
    SELECT o.tenant_id, o.id AS operator_id, t.token_id, t.token_hash
    FROM operators o
    JOIN unnest($1::uuid[], $2::uuid[], $3::bytea[]) AS t (operator_id, token_id, token_hash)
      ON t.operator_id = o.id
), records AS (
    INSERT INTO api_tokens (tenant_id, id, operator_id, name, token_hash, created_at)
    SELECT tenant_id, token_id, operator_id, 'seed', token_hash, $4 FROM seeded
)
INSERT INTO api_token_lookup (token_hash, tenant_id, token_id, operator_id)
SELECT token_hash, tenant_id, token_id, operator_id FROM seeded
"""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def seed_token(operator: str) -> str:
    """The test token of a seeded operator (`iat_` + 43 base64url characters)."""
    return "iat_" + b64url(hashlib.sha256(f"test token of {operator}".encode()).digest())


def seed_token_id(operator: str) -> str:
    return str(uuid.uuid5(_TOKEN_IDS, operator))


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def insert_seed_tokens(conn: Connection) -> None:
    operators = [row["id"] for row in await conn.fetch("SELECT id FROM operators")]
    await conn.execute(
        _INSERT_SEED_TOKENS,
        operators,
        [uuid.UUID(seed_token_id(str(o))) for o in operators],
        [token_hash(seed_token(str(o))) for o in operators],
        datetime.now(UTC),
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def bearer_from_identity(
    owners: Mapping[str, str],
) -> Callable[[httpx.Request], Awaitable[None]]:
    """An httpx request hook for AUTH_MODE=token: X-Operator-ID names a seeded operator →
    send its token instead. The identity headers are dropped when they agree with the token
    (the token alone identifies the caller) and kept when they do not (→ 401 expected); an
    operator without a seeded token gets no credential (→ 401)."""

    async def hook(request: httpx.Request) -> None:
        operator = request.headers.get("x-operator-id")
        if operator is None or operator not in owners:
            return
        request.headers["Authorization"] = f"Bearer {seed_token(operator)}"
        if request.headers.get("x-tenant-id") == owners[operator]:
            del request.headers["x-tenant-id"]
            del request.headers["x-operator-id"]

    return hook


async def seeded_owners(db: asyncpg.Pool) -> dict[str, str]:
    rows = await db.fetch("SELECT id::text, tenant_id::text FROM operators")
    return {row["id"]: row["tenant_id"] for row in rows}


@asynccontextmanager
async def running_app(settings: Settings, **changes: Any) -> AsyncIterator[FastAPI]:
    """An app with `changes` applied to the test settings, its lifespan running (own pool)."""
    changed = settings.model_copy(update={"db_min_conns": 1, "db_max_conns": 10, **changes})
    application = create_app(changed)
    async with application.router.lifespan_context(application):
        yield application


def forget_verified_tokens(application: FastAPI) -> None:
    """Empty the app's cache of verified tokens (services.tokens.TokenAuthenticator). Every
    test starts from a reseeded database, which to a long-lived app is a restore: tokens an
    earlier test revoked or expired exist again, and the reverse."""
    layer: Any = application.middleware_stack
    while layer is not None:
        if isinstance(layer, AuthenticationMiddleware):
            layer.tokens.forget()
        layer = getattr(layer, "app", None)


@asynccontextmanager
async def http_client(
    application: FastAPI, hook: Callable[[httpx.Request], Awaitable[None]] | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    forget_verified_tokens(application)
    transport = httpx.ASGITransport(app=application)
    hooks = {"request": [hook]} if hook else {}
    async with httpx.AsyncClient(
        transport=transport, base_url="http://testserver", event_hooks=hooks
    ) as http:
        yield http


def jwt_segments(header: Mapping[str, Any], claims: Mapping[str, Any]) -> str:
    """`header.claims` of a JWT (base64url JSON), to sign or to leave unsigned."""
    return ".".join(
        b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
    )
