"""Handing conversations to operators: automatic allocation and manual claim."""

from __future__ import annotations

from uuid import UUID

import asyncpg

from inbox_allocation.db.pool import Connection, Database
from inbox_allocation.domain.clock import Clock, utc_now
from inbox_allocation.domain.enums import ConversationState, OperatorStatus
from inbox_allocation.domain.errors import (
    CapacityReached,
    ConversationAlreadyClaimed,
    ConversationNotQueued,
    NoConversationsAvailable,
    NoSubscriptions,
    NotFound,
    NotSubscribedToInbox,
    OperatorNotAvailable,
    Unauthorized,
)
from inbox_allocation.observability.metrics import (
    ClaimOutcome,
    record_allocation,
    record_capacity_refusal,
    record_claim,
)
from inbox_allocation.sql import allocation as sql


class AllocationService:
    def __init__(self, db: Database, clock: Clock = utc_now) -> None:
        self.db = db
        self.clock = clock

    async def allocate_next(self, *, tenant_id: UUID, operator_id: UUID) -> asyncpg.Record:
        """The QUEUED conversation of the caller's inboxes with the highest priority right
        now (ties: longest waiting, then id), allocated to the caller.

        For an operator without a capacity limit this is one statement that also verifies
        the caller; only when nothing was allocated does a second query find out why. When
        the caller's status row is locked by someone else (lock order: sql/locking.py), the
        allocation waits for it in a transaction of its own instead.
        """
        at = self.clock().timestamp()
        try:
            row = await self.db.fetchrow(sql.ALLOCATE_NEXT, tenant_id, operator_id, at, True)
        except asyncpg.LockNotAvailableError:
            return await self._allocate_under_lock(tenant_id, operator_id, at)
        if row is not None:
            record_allocation()
            return row
        blocker = await self.db.fetchrow(sql.ALLOCATION_BLOCKER, tenant_id, operator_id)
        assert blocker is not None  # the query always returns one row
        if not blocker["operator_exists"]:
            raise Unauthorized()
        # No status row counts as OFFLINE (the Go service answered 500 here); BUSY
        # operators keep their conversations but receive none.
        if blocker["status"] != OperatorStatus.AVAILABLE:
            raise OperatorNotAvailable()
        if not blocker["has_subscriptions"]:
            raise NoSubscriptions()
        if blocker["capped"]:
            return await self._allocate_under_lock(tenant_id, operator_id, at)
        raise NoConversationsAvailable()

    async def _allocate_under_lock(
        self, tenant_id: UUID, operator_id: UUID, at: float
    ) -> asyncpg.Record:
        try:
            row = await self._allocate_within_capacity(tenant_id, operator_id, at)
        except CapacityReached:
            record_capacity_refusal("allocate")
            raise
        record_allocation()
        return row

    async def _allocate_within_capacity(
        self, tenant_id: UUID, operator_id: UUID, at: float
    ) -> asyncpg.Record:
        async with self.db.transaction() as conn:
            await _lock_caller_under_capacity(conn, tenant_id, operator_id)
            row = await conn.fetchrow(sql.ALLOCATE_NEXT, tenant_id, operator_id, at, False)
            if row is None:
                raise NoConversationsAvailable()
            return row

    async def claim(
        self, *, tenant_id: UUID, operator_id: UUID, conversation_id: UUID
    ) -> asyncpg.Record:
        """Take one particular QUEUED conversation (docs/decisions.md#claim).

        - QUEUED, caller subscribed to its inbox, under capacity → allocated to the caller;
        - already allocated to the caller → returned as is;
        - allocated to someone else, or resolved → 409 CONVERSATION_NOT_QUEUED;
        - locked by a concurrent transaction → 409 CONVERSATION_ALREADY_CLAIMED.
        """
        try:
            row, outcome = await self._claim(tenant_id, operator_id, conversation_id)
        except ConversationAlreadyClaimed:
            record_claim("already_claimed")
            raise
        except ConversationNotQueued:
            record_claim("not_queued")
            raise
        except CapacityReached:
            record_capacity_refusal("claim")
            raise
        record_claim(outcome)  # counted once committed
        return row

    async def _claim(
        self, tenant_id: UUID, operator_id: UUID, conversation_id: UUID
    ) -> tuple[asyncpg.Record, ClaimOutcome]:
        async with self.db.transaction() as conn:
            max_active = await _lock_available_caller(conn, tenant_id, operator_id)
            try:
                target = await conn.fetchrow(sql.LOCK_CLAIM_TARGET, tenant_id, conversation_id)
            except asyncpg.LockNotAvailableError:
                raise ConversationAlreadyClaimed() from None
            if target is None:
                raise NotFound("conversation not found")
            if target["state"] == ConversationState.ALLOCATED:
                if target["assigned_operator_id"] == operator_id:
                    return target, "already_owned"
                raise ConversationNotQueued("conversation is allocated to another operator")
            if target["state"] != ConversationState.QUEUED:
                raise ConversationNotQueued("conversation is resolved")
            subscription = await conn.fetchval(
                sql.SUBSCRIPTION, tenant_id, operator_id, target["inbox_id"]
            )
            if subscription is None:
                raise NotSubscribedToInbox()
            if max_active is not None:
                await _check_capacity(conn, tenant_id, operator_id, max_active)
            claimed = await conn.fetchrow(
                sql.ASSIGN_TO_CALLER, tenant_id, conversation_id, operator_id
            )
            assert claimed is not None  # the row is locked by this transaction and QUEUED
            return claimed, "claimed"


async def _lock_available_caller(
    conn: Connection, tenant_id: UUID, operator_id: UUID
) -> int | None:
    """Lock the caller's status row; it must be AVAILABLE. Returns its capacity limit."""
    caller = await conn.fetchrow(sql.LOCK_CALLER, tenant_id, operator_id)
    if caller is None or caller["status"] != OperatorStatus.AVAILABLE:
        raise OperatorNotAvailable()
    limit: int | None = caller["max_concurrent_conversations"]
    return limit


async def _check_capacity(conn: Connection, tenant_id: UUID, operator_id: UUID, limit: int) -> None:
    active = await conn.fetchval(sql.COUNT_ACTIVE, tenant_id, operator_id)
    if active >= limit:
        raise CapacityReached(f"operator holds {active} of at most {limit} conversations")


async def _lock_caller_under_capacity(conn: Connection, tenant_id: UUID, operator_id: UUID) -> None:
    limit = await _lock_available_caller(conn, tenant_id, operator_id)
    if limit is not None:
        await _check_capacity(conn, tenant_id, operator_id, limit)
