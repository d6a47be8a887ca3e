"""API tokens: issue (shown once), list, revoke, and authenticate a bearer token.

A token is `iat_` followed by 43 base64url characters (32 random bytes). Only its SHA-256
is stored: a leaked database does not leak usable tokens, and since the token is random
(not a password) a fast unsalted hash is enough. Authenticating reads one row by primary
key (sql.tokens.FIND_BY_HASH); nothing is cached, so a revocation holds on every replica
from its commit on.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from uuid_utils.compat import uuid7

from inbox_allocation.db.pool import Database
from inbox_allocation.domain.errors import NotFound, Unauthorized
from inbox_allocation.sql import tokens as sql

TOKEN_PREFIX = "iat_"  # noqa: S105 - a prefix, not a secret
TOKEN_PATTERN = re.compile(r"iat_[A-Za-z0-9_-]{43}")
# last_used_at is a hint for humans ("is this token still in use?"): one write per token per
# minute and replica at most, never one per request.
TOUCH_EVERY_SECONDS = 60.0
_TOUCH_MEMORY_LIMIT = 100_000


def new_token() -> str:
    return TOKEN_PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True, slots=True)
class TokenOwner:
    tenant_id: UUID
    operator_id: UUID
    token_id: UUID


class TokenService:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def operator_exists(self, *, tenant_id: UUID, operator_id: UUID) -> bool:
        return bool(await self.db.fetchval(sql.OPERATOR_EXISTS, tenant_id, operator_id))

    async def create(
        self, *, tenant_id: UUID, operator_id: UUID, name: str, expires_in_days: int | None
    ) -> dict[str, Any]:
        """The new token's record with the token itself (the only time it is shown)."""
        token = new_token()
        digest = token_hash(token)
        now = datetime.now(UTC)
        expires_at = now + timedelta(days=expires_in_days) if expires_in_days else None
        token_id = uuid7()
        async with self.db.transaction() as conn:
            row = await conn.fetchrow(
                sql.INSERT_TOKEN, tenant_id, token_id, operator_id, name, digest, now, expires_at
            )
            if row is None:
                raise NotFound("operator not found")
            await conn.execute(
                sql.INSERT_LOOKUP, tenant_id, token_id, operator_id, digest, expires_at
            )
        return {**dict(row), "token": token}

    async def list_for(self, *, tenant_id: UUID, operator_id: UUID) -> list[dict[str, Any]]:
        rows = await self.db.fetch(sql.LIST_TOKENS, tenant_id, operator_id)
        return [dict(row) for row in rows]

    async def revoke(self, *, tenant_id: UUID, operator_id: UUID, token_id: UUID) -> dict[str, Any]:
        async with self.db.transaction() as conn:
            row = await conn.fetchrow(
                sql.REVOKE_TOKEN, tenant_id, operator_id, token_id, datetime.now(UTC)
            )
            if row is None:
                raise NotFound("token not found")
            await conn.execute(sql.DELETE_LOOKUP, tenant_id, operator_id, token_id)
        return dict(row)


class TokenAuthenticator:
    """Bearer token → its owner, or 401. One per application (it remembers when it last
    wrote each token's last_used_at)."""

    def __init__(self) -> None:
        self._touched: dict[UUID, float] = {}

    async def authenticate(self, db: Database, token: str) -> TokenOwner:
        if not TOKEN_PATTERN.fullmatch(token):
            raise Unauthorized("malformed API token")
        row = await db.fetchrow(sql.FIND_BY_HASH, token_hash(token))
        if row is None:
            raise Unauthorized("unknown or revoked API token")
        if row["expired"]:
            raise Unauthorized("expired API token")
        return TokenOwner(row["tenant_id"], row["operator_id"], row["token_id"])

    async def touch(self, db: Database, owner: TokenOwner) -> None:
        """Record a use of the token (call once the request is accepted)."""
        now = time.monotonic()
        last = self._touched.get(owner.token_id)
        if last is not None and now - last < TOUCH_EVERY_SECONDS:
            return
        if len(self._touched) >= _TOUCH_MEMORY_LIMIT:
            self._touched.clear()  # worst case: one extra write per token
        self._touched[owner.token_id] = now
        await db.execute(sql.TOUCH_LAST_USED, owner.tenant_id, owner.token_id, datetime.now(UTC))
