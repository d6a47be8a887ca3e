"""Idempotency-Key semantics (decisions.md), on PostgreSQL so they hold across replicas.

- The first request with a key reserves it (insert-first) and runs; its result — 2xx or 4xx —
  is stored and replayed byte for byte to every retry until the TTL expires.
- A duplicate arriving while the first still runs waits for it (up to 10 s) and replays its
  result; past that, 409 IDEMPOTENCY_KEY_IN_PROGRESS. Exactly one execution per key.
- The same key with a different request (method, path, query or canonical JSON body) is
  refused with 422 IDEMPOTENCY_KEY_REUSED.
- A 5xx is not stored (the reservation is released) so the client can retry.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

import orjson
from uuid_utils.compat import uuid7

from inbox_allocation.db.pool import Database
from inbox_allocation.domain.errors import IdempotencyKeyInProgress, IdempotencyKeyReused
from inbox_allocation.sql import idempotency as sql
from inbox_allocation.sql import maintenance

WAIT_FOR_FIRST_SECONDS = 10.0
# An unfinished reservation older than this is considered abandoned (its process died).
ABANDONED_AFTER_SECONDS = 60.0
CLEANUP_BATCH = 5_000


def fingerprint(method: str, path: str, query: str, body: bytes) -> str:
    """SHA-256 of the request: JSON bodies canonicalised (key order, spacing)."""
    try:
        canonical = orjson.dumps(orjson.loads(body), option=orjson.OPT_SORT_KEYS) if body else b""
    except orjson.JSONDecodeError:
        canonical = body
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode(), query.encode(), canonical):
        digest.update(part)
        digest.update(b"\0")
    return digest.hexdigest()


@dataclass(frozen=True)
class Scope:
    tenant_id: UUID
    operator_id: UUID
    method: str
    path: str
    key: str


@dataclass(frozen=True)
class StoredResponse:
    status: int
    body: bytes


@dataclass(frozen=True)
class Reservation:
    row_id: UUID


class IdempotencyStore:
    def __init__(self, db: Database, ttl: timedelta) -> None:
        self.db = db
        self.ttl = ttl

    async def begin(self, scope: Scope, request_hash: str) -> Reservation | StoredResponse | None:
        """Own the key (Reservation), or get the stored result to replay (StoredResponse).

        None: the operator is not a member of the tenant; run without idempotency (the
        route answers 401 and nothing is stored for a foreign identity).
        """
        deadline = time.monotonic() + WAIT_FOR_FIRST_SECONDS
        delay = 0.005
        while True:
            reserved_id = await self.db.fetchval(
                sql.RESERVE, scope.tenant_id, scope.operator_id, scope.method, scope.path,
                scope.key, request_hash, self.ttl, uuid7(),
            )  # fmt: skip
            if reserved_id is not None:
                return Reservation(reserved_id)
            existing = await self.db.fetchrow(
                sql.FIND, scope.tenant_id, scope.operator_id, scope.method, scope.path,
                scope.key, ABANDONED_AFTER_SECONDS,
            )  # fmt: skip
            if existing is None:
                if not await self.db.fetchval(sql.CALLER_KNOWN, scope.tenant_id, scope.operator_id):
                    return None
                continue  # released or forgotten meanwhile: try to reserve again
            if existing["expired"] or existing["abandoned"]:
                await self.db.execute(
                    sql.FORGET_STALE, scope.tenant_id, existing["id"], ABANDONED_AFTER_SECONDS
                )
                continue
            if existing["request_hash"] != request_hash:
                raise IdempotencyKeyReused()
            if existing["response_status"] is not None:
                return StoredResponse(existing["response_status"], existing["response_body"])
            if time.monotonic() >= deadline:
                raise IdempotencyKeyInProgress()
            await asyncio.sleep(delay)  # the first request is still running
            delay = min(delay * 2, 0.1)

    async def complete(
        self, scope: Scope, reservation: Reservation, status: int, body: bytes
    ) -> None:
        if status >= 500:
            await self.release(scope, reservation)
            return
        await self.db.execute(sql.STORE_RESULT, scope.tenant_id, reservation.row_id, status, body)

    async def release(self, scope: Scope, reservation: Reservation) -> None:
        await self.db.execute(sql.RELEASE, scope.tenant_id, reservation.row_id)

    async def delete_expired(self) -> int:
        """Cleanup worker: remove every expired key, tenant by tenant, a bounded batch at a
        time."""
        deleted = 0
        for tenant in await self.db.fetch(maintenance.ALL_TENANT_IDS):
            while True:
                status = await self.db.execute(
                    sql.DELETE_EXPIRED_BATCH, tenant["id"], CLEANUP_BATCH
                )
                count = int(status.split()[-1])
                deleted += count
                if count < CLEANUP_BATCH:
                    break
        return deleted
