"""Idempotency-Key semantics (docs/decisions.md#idempotency), on PostgreSQL so they hold across
replicas.

- The first request with a key reserves it (insert-first) and runs; its result — 2xx or 4xx —
  is stored and replayed byte for byte to every retry until the TTL expires.
- A duplicate arriving while the first still runs waits for it (up to 10 s) and replays its
  result; past that, 409 IDEMPOTENCY_KEY_IN_PROGRESS. Exactly one execution per key. The
  wait costs the database little: a duplicate of a request running in the same process
  waits for it to settle in memory (one read afterwards); otherwise it reads the key once
  per poll (not a reservation attempt as well), polls spaced up to POLL_MAX_SECONDS.
- The same key with a different request (method, path, query or canonical JSON body) is
  refused with 422 IDEMPOTENCY_KEY_REUSED.
- A 5xx is not stored (the reservation is released) so the client can retry — unless the
  request's writes committed before it failed (the reservation is marked `executed` in the
  same transaction as the writes): it must not run twice, so its retries get the stored
  "applied, response lost" answer.
- The owner refreshes its reservation's heartbeat while it runs; only a reservation whose
  heartbeat stopped (its process died) is taken over, however long its request runs.
- Reserving, storing and releasing are retried on a fresh connection when the database drops
  one, so an attempt that lost its connection frees its key at once for the client's retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar
from uuid import UUID

import orjson
from uuid_utils.compat import uuid7

from inbox_allocation.db.pool import UNAVAILABLE_ERRORS, Database
from inbox_allocation.domain.errors import (
    DatabaseUnavailable,
    IdempotencyKeyInProgress,
    IdempotencyKeyReused,
)
from inbox_allocation.logging import get_logger
from inbox_allocation.sql import idempotency as sql
from inbox_allocation.sql import maintenance

log = get_logger(__name__)

WAIT_FOR_FIRST_SECONDS = 10.0
# A duplicate of a request running in another process polls the key, 5 ms after the first
# look and then twice as long each time up to this: at most about 55 reads in the 10 s.
POLL_MAX_SECONDS = 0.2
# The owner of a reservation refreshes it this often while its request runs; a reservation
# not refreshed for ABANDONED_AFTER_SECONDS belongs to a process that stopped.
HEARTBEAT_SECONDS = 5.0
ABANDONED_AFTER_SECONDS = 30.0
CLEANUP_BATCH = 5_000
# Bookkeeping statements (reserve clean-up, store, release) are tried this many times, a
# fresh connection each time, within about a second: the database dropping one connection
# must not leave a key reserved by an attempt that is gone.
BOOKKEEPING_ATTEMPTS = 3
BOOKKEEPING_BACKOFF_SECONDS = (0.1, 0.4)

# A database that dropped the connection or refused the statement for the moment.
UNAVAILABLE: tuple[type[Exception], ...] = (*UNAVAILABLE_ERRORS, DatabaseUnavailable)

T = TypeVar("T")

# The reservations this process owns (row id → set once the request settled its key): a
# duplicate of one of them waits on this instead of polling the database.
_SETTLED: dict[UUID, asyncio.Event] = {}


async def _persistently(operation: Callable[[], Awaitable[T]]) -> T:
    for attempt in range(BOOKKEEPING_ATTEMPTS):
        try:
            return await operation()
        except UNAVAILABLE:
            if attempt == BOOKKEEPING_ATTEMPTS - 1:
                raise
            await asyncio.sleep(BOOKKEEPING_BACKOFF_SECONDS[attempt])
    raise AssertionError("unreachable")


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


def _settled(reservation: Reservation) -> None:
    """Wake the duplicates waiting in this process (they read the key once more)."""
    event = _SETTLED.pop(reservation.row_id, None)
    if event is not None:
        event.set()


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
        reserve = True  # False while the key is known to be held: read it, do not insert
        while True:
            if reserve:
                row_id = uuid7()
                try:
                    reserved_id = await self.db.fetchval(
                        sql.RESERVE, scope.tenant_id, scope.operator_id, scope.method,
                        scope.path, scope.key, request_hash, self.ttl, row_id,
                    )  # fmt: skip
                except UNAVAILABLE:
                    # The reservation may have been committed before the connection was
                    # lost: never leave it behind for the client's retry to wait on.
                    await self._release_quietly(scope, Reservation(row_id))
                    raise
                if reserved_id is not None:
                    _SETTLED[reserved_id] = asyncio.Event()
                    return Reservation(reserved_id)
            existing = await self.db.fetchrow(
                sql.FIND, scope.tenant_id, scope.operator_id, scope.method, scope.path,
                scope.key, ABANDONED_AFTER_SECONDS,
            )  # fmt: skip
            reserve = True
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
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise IdempotencyKeyInProgress()
            # The first request is still running: wait, then read the key again.
            reserve = False
            settled = _SETTLED.get(existing["id"])
            if settled is not None:  # it runs in this process: no polling
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(settled.wait(), remaining)
            else:
                await asyncio.sleep(min(delay, remaining))
                delay = min(delay * 2, POLL_MAX_SECONDS)

    async def heartbeat(self, scope: Scope, reservation: Reservation) -> None:
        """Refresh the reservation every HEARTBEAT_SECONDS until cancelled."""
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            try:
                await self.db.execute(sql.HEARTBEAT, scope.tenant_id, reservation.row_id)
            except UNAVAILABLE as exc:
                log.warning("could not refresh an idempotency reservation", error=str(exc))

    async def complete(
        self,
        scope: Scope,
        reservation: Reservation,
        status: int,
        body: bytes,
        *,
        applied: tuple[int, bytes],
    ) -> None:
        """Store a 2xx/4xx result; release a 5xx one (`applied` is stored instead when the
        request's writes committed)."""
        if status >= 500 or status == 405:
            # 405: the method has no route here, nothing ran; its answer carries an Allow
            # header that a replay (status and body only) would lose.
            await self.release(scope, reservation, applied=applied)
            return
        try:
            await _persistently(
                lambda: self.db.execute(
                    sql.STORE_RESULT, scope.tenant_id, reservation.row_id, status, body
                )
            )
        finally:
            _settled(reservation)

    async def release(
        self, scope: Scope, reservation: Reservation, *, applied: tuple[int, bytes] | None = None
    ) -> None:
        status, body = applied if applied is not None else (None, None)
        try:
            await _persistently(
                lambda: self.db.execute(
                    sql.RELEASE, scope.tenant_id, reservation.row_id, status, body
                )
            )
        finally:
            _settled(reservation)

    async def _release_quietly(self, scope: Scope, reservation: Reservation) -> None:
        try:
            await self.release(scope, reservation)
        except UNAVAILABLE as exc:
            log.warning("could not release an idempotency reservation", error=str(exc))

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
