"""Which operators serve which inboxes: list, subscribe, unsubscribe."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg
from uuid_utils.compat import uuid7

from inbox_allocation.db.pool import Database
from inbox_allocation.domain.errors import InboxNotFound, NotFound
from inbox_allocation.services.pagination import fetch_page
from inbox_allocation.sql import locking
from inbox_allocation.sql import subscriptions as sql

# A subscribe that meets a concurrent unsubscribe of the same pair retries this often.
_SUBSCRIBE_ATTEMPTS = 3


class SubscriptionService:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def list_for_inbox(
        self, *, tenant_id: UUID, inbox_id: UUID, page: int, per_page: int
    ) -> tuple[list[dict[str, Any]], int]:
        """404 unless the inbox is the tenant's (docs/decisions.md#foreign-ids-are-missing-ids)."""
        async with self.db.connection() as conn:
            if not await conn.fetchval(sql.INBOX_EXISTS, tenant_id, inbox_id):
                raise InboxNotFound()
            return await fetch_page(
                conn,
                sql.LIST_BY_INBOX,
                sql.COUNT_BY_INBOX,
                tenant_id,
                inbox_id,
                page=page,
                per_page=per_page,
            )

    async def list_for_operator(
        self, *, tenant_id: UUID, operator_id: UUID, page: int, per_page: int
    ) -> tuple[list[dict[str, Any]], int]:
        """404 unless the operator is the tenant's
        (docs/decisions.md#foreign-ids-are-missing-ids)."""
        async with self.db.connection() as conn:
            if not await conn.fetchval(sql.OPERATOR_EXISTS, tenant_id, operator_id):
                raise NotFound("operator not found")
            return await fetch_page(
                conn,
                sql.LIST_BY_OPERATOR,
                sql.COUNT_BY_OPERATOR,
                tenant_id,
                operator_id,
                page=page,
                per_page=per_page,
            )

    async def subscribe(
        self, *, tenant_id: UUID, inbox_id: UUID, operator_id: UUID
    ) -> asyncpg.Record:
        """The new subscription, or the existing one when the pair is already subscribed.

        Concurrent identical subscribes all get the one row: the unique index makes the
        losers' inserts wait for the winner and then insert nothing, and they read its row.
        """
        async with self.db.transaction() as conn:
            if await conn.fetchval(sql.LOCK_INBOX, tenant_id, inbox_id) is None:
                raise InboxNotFound()
            if await conn.fetchval(sql.LOCK_OPERATOR, tenant_id, operator_id) is None:
                raise NotFound("operator not found")
            for _ in range(_SUBSCRIBE_ATTEMPTS):
                row: asyncpg.Record | None = await conn.fetchrow(
                    sql.INSERT_SUBSCRIPTION, tenant_id, inbox_id, operator_id, uuid7()
                )
                if row is None:
                    row = await conn.fetchrow(
                        sql.GET_SUBSCRIPTION, tenant_id, inbox_id, operator_id
                    )
                if row is not None:
                    return row
                # The existing row was unsubscribed meanwhile: insert again.
            raise RuntimeError("subscription kept disappearing while subscribing")

    async def unsubscribe(self, *, tenant_id: UUID, inbox_id: UUID, operator_id: UUID) -> None:
        """Remove the pair (no-op when absent) and re-queue the operator's conversations in
        that inbox, in one transaction (docs/decisions.md#subscriptions). 404 unless the inbox is
        the tenant's.
        """
        async with self.db.transaction() as conn:
            if await conn.fetchval(sql.LOCK_INBOX, tenant_id, inbox_id) is None:
                raise InboxNotFound()
            # Lock order (sql/locking.py): the operator's status row before its subscription
            # and conversations, so no allocation, claim or reassign of it is in flight.
            await conn.execute(locking.LOCK_STATUS_ROWS_EXCLUSIVE, tenant_id, [operator_id])
            await conn.execute(sql.DELETE_SUBSCRIPTION, tenant_id, inbox_id, operator_id)
            await conn.execute(sql.REQUEUE_OPERATOR_IN_INBOX, tenant_id, inbox_id, operator_id)
