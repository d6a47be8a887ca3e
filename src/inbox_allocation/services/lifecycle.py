"""Resolve, deallocate, reassign and move: row-locked transitions with the contract's checks.

Every method locks (lock order: sql/locking.py) the holder's status row, then the
conversation, and decides from the locked, current row; the loser of a race therefore gets
the answer its late check produces (e.g. a second concurrent resolve sees RESOLVED and
returns it unchanged; a deallocate racing a resolve gets 409). Check order:
docs/decisions.md#lifecycle-transitions.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from uuid import UUID

import asyncpg

from inbox_allocation.db.pool import Connection, Database
from inbox_allocation.domain.enums import ConversationState, OperatorStatus
from inbox_allocation.domain.errors import (
    Conflict,
    ConversationAlreadyResolved,
    ConversationNotAllocated,
    ConversationNotFound,
    InboxNotFound,
    InsufficientPermissions,
    OperatorNotAvailableForReassign,
    OperatorNotFound,
    OperatorNotSubscribed,
)
from inbox_allocation.sql import lifecycle as sql
from inbox_allocation.sql import locking

# A conversation that changes hands between the unlocked read of its holder and its lock is
# locked again this many times in all (each time a fresh transaction) before a 409.
_LOCK_ATTEMPTS = 3


class _HolderChanged(Exception):
    """The conversation got another holder after its holder's status row was locked."""


async def _lock(
    conn: Connection, tenant_id: UUID, conversation_id: UUID, also: UUID | None = None
) -> asyncpg.Record:
    """Lock the status rows of the holder and of `also` (ascending), then the conversation.

    Raises _HolderChanged when the locked row names a holder whose status row is not locked:
    locking it now would break the lock order, so the transaction starts again.
    """
    peek = await conn.fetchrow(sql.PEEK_HOLDER, tenant_id, conversation_id)
    if peek is None:
        raise ConversationNotFound()
    holder = _holder(peek)
    operators = sorted({o for o in (holder, also) if o is not None})
    if operators:
        await conn.execute(locking.LOCK_STATUS_ROWS_SHARED, tenant_id, operators)
    row = await conn.fetchrow(sql.LOCK_CONVERSATION, tenant_id, conversation_id)
    if row is None:
        raise ConversationNotFound()
    current = _holder(row)
    if current is not None and current not in operators:
        raise _HolderChanged()
    return row


def _holder(row: asyncpg.Record) -> UUID | None:
    if row["state"] != ConversationState.ALLOCATED:
        return None
    holder: UUID | None = row["assigned_operator_id"]
    return holder


class LifecycleService:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def _transition(
        self, body: Callable[[Connection], Awaitable[asyncpg.Record]]
    ) -> asyncpg.Record:
        """Run `body` in a transaction, again when the conversation changed hands under it."""
        for _ in range(_LOCK_ATTEMPTS):
            try:
                async with self.db.transaction() as conn:
                    return await body(conn)
            except _HolderChanged:
                continue
        raise Conflict("the conversation kept changing hands; retry")

    async def resolve(
        self, *, tenant_id: UUID, operator_id: UUID, manager: bool, conversation_id: UUID
    ) -> asyncpg.Record:
        """The assignee or a manager closes the conversation (`assigned_operator_id` kept)."""

        async def body(conn: Connection) -> asyncpg.Record:
            row = await _lock(conn, tenant_id, conversation_id)
            if row["state"] == ConversationState.QUEUED:
                raise ConversationNotAllocated("a queued conversation cannot be resolved")
            if not manager and row["assigned_operator_id"] != operator_id:
                raise InsufficientPermissions("only the assignee or a manager can resolve")
            if row["state"] == ConversationState.RESOLVED:
                return row  # already resolved: unchanged (after the permission check)
            resolved = await conn.fetchrow(sql.RESOLVE, tenant_id, conversation_id)
            await conn.execute(sql.DELETE_GRACE_ROW, tenant_id, conversation_id)
            assert resolved is not None
            return resolved

        return await self._transition(body)

    async def deallocate(
        self, *, tenant_id: UUID, manager: bool, conversation_id: UUID
    ) -> asyncpg.Record:
        """A manager puts an allocated conversation back in the queue."""
        if not manager:
            raise InsufficientPermissions("only a manager can deallocate")

        async def body(conn: Connection) -> asyncpg.Record:
            row = await _lock(conn, tenant_id, conversation_id)
            if row["state"] == ConversationState.QUEUED:
                return row
            if row["state"] == ConversationState.RESOLVED:
                raise ConversationAlreadyResolved()
            requeued = await conn.fetchrow(
                sql.REQUEUE, tenant_id, conversation_id, row["assigned_operator_id"]
            )
            await conn.execute(sql.DELETE_GRACE_ROW, tenant_id, conversation_id)
            assert requeued is not None
            return requeued

        return await self._transition(body)

    async def reassign(
        self, *, tenant_id: UUID, manager: bool, conversation_id: UUID, target_operator_id: UUID
    ) -> asyncpg.Record:
        """A manager hands an allocated conversation to another AVAILABLE, subscribed operator
        (the target's capacity may be exceeded: a manager's decision)."""
        if not manager:
            raise InsufficientPermissions("only a manager can reassign")

        async def body(conn: Connection) -> asyncpg.Record:
            row = await _lock(conn, tenant_id, conversation_id, also=target_operator_id)
            if row["state"] != ConversationState.ALLOCATED:
                raise ConversationNotAllocated()
            if row["assigned_operator_id"] == target_operator_id:
                return row
            target = await conn.fetchrow(
                sql.TARGET_OPERATOR, tenant_id, target_operator_id, row["inbox_id"]
            )
            if target is None:
                raise OperatorNotFound()
            if not target["subscribed"]:
                raise OperatorNotSubscribed()
            if target["status"] != OperatorStatus.AVAILABLE:
                raise OperatorNotAvailableForReassign()  # also OFFLINE and BUSY targets
            reassigned = await conn.fetchrow(
                sql.REASSIGN, tenant_id, conversation_id, target_operator_id
            )
            await conn.execute(sql.DELETE_GRACE_ROW, tenant_id, conversation_id)
            assert reassigned is not None
            return reassigned

        return await self._transition(body)

    async def move_to_inbox(
        self, *, tenant_id: UUID, manager: bool, conversation_id: UUID, target_inbox_id: UUID
    ) -> asyncpg.Record:
        """A manager moves a conversation to another inbox of the tenant.

        An allocated conversation whose operator is not subscribed to the new inbox goes back
        to the queue; labels of the old inbox are detached. Resolved conversations stay put.
        """
        if not manager:
            raise InsufficientPermissions("only a manager can move conversations")

        async def body(conn: Connection) -> asyncpg.Record:
            row = await _lock(conn, tenant_id, conversation_id)
            if row["state"] == ConversationState.RESOLVED:
                raise ConversationAlreadyResolved("a resolved conversation cannot be moved")
            if row["inbox_id"] == target_inbox_id:
                return row
            # Another tenant's inbox is answered as a missing one
            # (docs/decisions.md#foreign-ids-are-missing-ids; the
            # original's 400 INBOX_DIFFERENT_TENANT revealed it exists).
            target = await conn.fetchrow(
                sql.TARGET_INBOX, tenant_id, target_inbox_id, row["assigned_operator_id"]
            )
            if target is None:
                raise InboxNotFound()
            leaves_operator = (
                row["state"] == ConversationState.ALLOCATED and not target["assignee_subscribed"]
            )
            # Detached first, so the moved row's labels (read by MOVE_TO_INBOX) are the ones
            # it keeps.
            await conn.execute(
                sql.DETACH_FOREIGN_INBOX_LABELS, tenant_id, conversation_id, target_inbox_id
            )
            moved = await conn.fetchrow(
                sql.MOVE_TO_INBOX, tenant_id, conversation_id, target_inbox_id, leaves_operator,
                row["inbox_id"], row["assigned_operator_id"],
            )  # fmt: skip
            if leaves_operator:
                # The allocation ended; if it stays with its (OFFLINE) operator the grace row
                # stays too, so the sweeper can still release it.
                await conn.execute(sql.DELETE_GRACE_ROW, tenant_id, conversation_id)
            assert moved is not None
            return moved

        return await self._transition(body)
