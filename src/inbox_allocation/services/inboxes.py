"""Inboxes of a tenant: list (the caller's subscriptions), create, read, update, delete."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg
from uuid_utils.compat import uuid7

from inbox_allocation.db.pool import Database
from inbox_allocation.domain.errors import Conflict, InboxNotFound
from inbox_allocation.services.pagination import fetch_page
from inbox_allocation.sql import inboxes as sql
from inbox_allocation.sql import locking

# Conversations deleted per statement when an inbox is deleted (each statement stays short,
# far below the command timeout, however large the inbox).
DELETE_BATCH = 1000

# The unique index on inboxes (tenant_id, phone_number).
PHONE_UNIQUE_INDEX = "idx_inboxes_tenant_phone"


class InboxService:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def list_subscribed(
        self, *, tenant_id: UUID, operator_id: UUID, page: int, per_page: int
    ) -> tuple[list[dict[str, Any]], int]:
        """The caller's subscribed inboxes in the tenant, in subscription order (any role)."""
        async with self.db.connection() as conn:
            return await fetch_page(
                conn,
                sql.LIST_SUBSCRIBED,
                sql.COUNT_SUBSCRIBED,
                tenant_id,
                operator_id,
                page=page,
                per_page=per_page,
            )

    async def get(self, *, tenant_id: UUID, inbox_id: UUID) -> asyncpg.Record:
        row = await self.db.fetchrow(sql.GET_INBOX, tenant_id, inbox_id)
        if row is None:
            raise InboxNotFound()
        return row

    async def create(
        self, *, tenant_id: UUID, phone_number: str, display_name: str
    ) -> asyncpg.Record:
        """409 CONFLICT when the tenant already has an inbox with this phone number."""
        row = await self.db.fetchrow(
            sql.INSERT_INBOX, tenant_id, uuid7(), phone_number, display_name
        )
        if row is None:
            raise Conflict("an inbox with this phone number already exists")
        return row

    async def update(
        self,
        *,
        tenant_id: UUID,
        inbox_id: UUID,
        phone_number: str | None,
        display_name: str | None,
    ) -> asyncpg.Record:
        """Change the given fields (None = unchanged); `updated_at` always moves."""
        try:
            row = await self.db.fetchrow(
                sql.UPDATE_INBOX, tenant_id, inbox_id, phone_number, display_name
            )
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name != PHONE_UNIQUE_INDEX:
                raise
            raise Conflict("another inbox of the tenant has this phone number") from exc
        if row is None:
            raise InboxNotFound()
        return row

    async def delete(self, *, tenant_id: UUID, inbox_id: UUID) -> None:
        """Its subscriptions, conversations (with their grace rows and label attachments) and
        labels go with it, in one transaction, deleted explicitly in the lock order of
        sql/locking.py: the subscribers' status rows are held, so none of them is allocating,
        claiming or being given a conversation of the inbox meanwhile.
        """
        async with self.db.transaction() as conn:
            if await conn.fetchval(sql.LOCK_INBOX_FOR_DELETE, tenant_id, inbox_id) is None:
                raise InboxNotFound()
            operators = sorted(
                r[0] for r in await conn.fetch(sql.INBOX_OPERATORS, tenant_id, inbox_id)
            )
            await conn.execute(locking.LOCK_STATUS_ROWS_EXCLUSIVE, tenant_id, operators)
            await conn.execute(sql.DELETE_INBOX_SUBSCRIPTIONS, tenant_id, inbox_id)
            ids = [r[0] for r in await conn.fetch(sql.INBOX_CONVERSATION_IDS, tenant_id, inbox_id)]
            for start in range(0, len(ids), DELETE_BATCH):
                batch = ids[start : start + DELETE_BATCH]
                await conn.execute(sql.DELETE_CONVERSATION_BATCH, tenant_id, inbox_id, batch)
            await conn.execute(sql.DELETE_INBOX_LABELS, tenant_id, inbox_id)
            await conn.execute(sql.DELETE_INBOX, tenant_id, inbox_id)
