"""Handing conversations to operators: automatic allocation and manual claim."""

from __future__ import annotations

from uuid import UUID

import asyncpg

from inbox_allocation.db.pool import Database
from inbox_allocation.domain.enums import ConversationState, OperatorStatus
from inbox_allocation.domain.errors import (
    ConversationAlreadyClaimed,
    ConversationNotQueued,
    NoConversationsAvailable,
    NoSubscriptions,
    NotFound,
    NotSubscribedToInbox,
    OperatorNotAvailable,
    Unauthorized,
)
from inbox_allocation.sql import allocation as sql


class AllocationService:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def allocate_next(self, *, tenant_id: UUID, operator_id: UUID) -> asyncpg.Record:
        """The highest-priority QUEUED conversation of the caller's inboxes, now theirs.

        The happy path is one statement that also verifies the caller; only when nothing
        was allocated does a second query find out why.
        """
        row = await self.db.fetchrow(sql.ALLOCATE_NEXT, tenant_id, operator_id)
        if row is not None:
            return row
        blocker = await self.db.fetchrow(sql.ALLOCATION_BLOCKER, tenant_id, operator_id)
        assert blocker is not None  # the query always returns one row
        if not blocker["operator_exists"]:
            raise Unauthorized()
        # No status row counts as OFFLINE (the original answered 500 here, D-24).
        if blocker["status"] != OperatorStatus.AVAILABLE:
            raise OperatorNotAvailable()
        if not blocker["has_subscriptions"]:
            raise NoSubscriptions()
        raise NoConversationsAvailable()

    async def claim(
        self, *, tenant_id: UUID, operator_id: UUID, conversation_id: UUID
    ) -> asyncpg.Record:
        """Take one particular QUEUED conversation (decisions.md semantics, fixing D-02/D-23).

        - QUEUED, caller subscribed to its inbox → allocated to the caller;
        - already allocated to the caller → returned as is;
        - allocated to someone else, or resolved → 409 CONVERSATION_NOT_QUEUED;
        - locked by a concurrent transaction → 409 CONVERSATION_ALREADY_CLAIMED.
        """
        async with self.db.transaction() as conn:
            status = await conn.fetchval(sql.LOCK_CALLER_STATUS, tenant_id, operator_id)
            if status != OperatorStatus.AVAILABLE:
                raise OperatorNotAvailable()
            try:
                target = await conn.fetchrow(
                    sql.LOCK_CLAIM_TARGET, tenant_id, conversation_id, operator_id
                )
            except asyncpg.LockNotAvailableError:
                raise ConversationAlreadyClaimed() from None
            if target is None:
                raise NotFound("conversation not found")
            if target["state"] == ConversationState.ALLOCATED:
                if target["assigned_operator_id"] == operator_id:
                    return target
                raise ConversationNotQueued("conversation is allocated to another operator")
            if target["state"] != ConversationState.QUEUED:
                raise ConversationNotQueued("conversation is resolved")
            if not target["caller_subscribed"]:
                raise NotSubscribedToInbox()
            claimed = await conn.fetchrow(
                sql.ASSIGN_TO_CALLER, tenant_id, conversation_id, operator_id
            )
            assert claimed is not None  # the row is locked by this transaction and QUEUED
            return claimed
