"""API tokens: issue (shown once), list, revoke, and authenticate a bearer token.

A token is `iat_` followed by 43 base64url characters (32 random bytes). Only its SHA-256
is stored: a leaked database does not leak usable tokens, and since the token is random
(not a password) a fast unsalted hash is enough.

Authenticating costs no database round trip for a token seen recently: each process keeps
the tokens it has verified (hash → owner and expiry) and re-checks all of them against
the database in one statement (sql.tokens.STILL_VALID) whenever the last check is older
than CACHE_SECONDS, before it answers from the cache. So a token revoked (or whose operator
was deleted) is refused by every replica at most CACHE_SECONDS after the revocation
committed — the rule is "within 1 s" — while a busy operator's requests skip the lookup
(one primary-key read per request cost about a tenth of an /allocate). Expiry is checked
against the cached expiry on every request. Unknown tokens are never cached: each one is
one primary-key read (sql.tokens.FIND_BY_HASH).
"""

from __future__ import annotations

import asyncio
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
# A cached token is trusted for at most this long after the database last confirmed it:
# the bound on how late a revocation reaches a replica (the rule is 1 s).
CACHE_SECONDS = 0.5
_CACHE_LIMIT = 100_000


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


@dataclass(frozen=True, slots=True)
class _Verified:
    owner: TokenOwner
    expires_at: datetime | None


class TokenAuthenticator:
    """Bearer token → its owner, or 401. One per application: it caches the tokens it has
    verified (see the module's docstring) and remembers when it last wrote each token's
    last_used_at."""

    def __init__(self, cache_seconds: float = CACHE_SECONDS) -> None:
        self.cache_seconds = cache_seconds
        self._touched: dict[UUID, float] = {}
        self._verified: dict[bytes, _Verified] = {}
        # monotonic instant at which the last re-check (or the first lookup) started: every
        # cached entry was read from the database at or after it.
        self._checked_at = float("-inf")
        self._checking = asyncio.Lock()

    async def authenticate(self, db: Database, token: str) -> TokenOwner:
        if not TOKEN_PATTERN.fullmatch(token):
            raise Unauthorized("malformed API token")
        digest = token_hash(token)
        await self._recheck_if_due(db)
        verified = self._verified.get(digest)
        if verified is None:
            read_at = time.monotonic()
            row = await db.fetchrow(sql.FIND_BY_HASH, digest)
            if row is None:
                raise Unauthorized("unknown or revoked API token")
            owner = TokenOwner(row["tenant_id"], row["operator_id"], row["token_id"])
            verified = _Verified(owner, row["expires_at"])
            # Cached only when read after the last re-check started: an older read may predate
            # a revocation that the re-check has already applied.
            if read_at >= self._checked_at:
                if len(self._verified) >= _CACHE_LIMIT:
                    self._verified.clear()
                self._verified[digest] = verified
        if verified.expires_at is not None and verified.expires_at <= datetime.now(UTC):
            self._verified.pop(digest, None)  # expired for good: no need to remember it
            raise Unauthorized("expired API token")
        return verified.owner

    def forget(self) -> None:
        """Empty the cache: the next request of every token reads the database again."""
        self._verified.clear()

    async def _recheck_if_due(self, db: Database) -> None:
        """Drop the cached tokens the database no longer knows (revoked, operator deleted),
        once per cache_seconds; requests arriving meanwhile wait for the one re-check."""
        if time.monotonic() - self._checked_at < self.cache_seconds:
            return
        async with self._checking:
            started = time.monotonic()
            if started - self._checked_at < self.cache_seconds:
                return  # another request re-checked while this one waited
            if self._verified:
                rows = await db.fetch(sql.STILL_VALID, list(self._verified))
                alive = {bytes(row["token_hash"]): row["expires_at"] for row in rows}
                self._verified = {
                    digest: _Verified(entry.owner, alive[digest])
                    for digest, entry in self._verified.items()
                    if digest in alive
                }
            self._checked_at = started

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
