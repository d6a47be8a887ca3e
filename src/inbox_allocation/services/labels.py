"""Labels: per-inbox tags managed by managers and attached to conversations (contract §6.10).

Create, update and delete need a manager-level caller; listing, attaching and detaching are
open to managers and to an OPERATOR subscribed to the inbox. A duplicate name is always a 409
(also when two requests race: the unique index decides, D-07), never a 500.
"""

from __future__ import annotations

from uuid import UUID

import asyncpg
from uuid_utils.compat import uuid7

from inbox_allocation.db.pool import Connection, Database
from inbox_allocation.domain.enums import Role
from inbox_allocation.domain.errors import (
    ConversationNotFound,
    InboxNotFound,
    LabelInboxMismatch,
    LabelNameConflict,
    LabelNotFound,
    LabelPermissionDenied,
)
from inbox_allocation.sql import labels as sql


def _require_manager(role: Role) -> None:
    if not role.is_manager_level:
        raise LabelPermissionDenied("only a MANAGER or ADMIN can manage labels")


class LabelService:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(
        self,
        *,
        tenant_id: UUID,
        operator_id: UUID,
        role: Role,
        inbox_id: UUID,
        name: str,
        color: str | None,
    ) -> asyncpg.Record:
        _require_manager(role)
        async with self.db.transaction() as conn:
            if await conn.fetchval(sql.LOCK_INBOX, tenant_id, inbox_id) is None:
                raise InboxNotFound()  # D-26: the original said CONVERSATION_NOT_FOUND
            row: asyncpg.Record | None = await conn.fetchrow(
                sql.INSERT_LABEL, tenant_id, inbox_id, name, color, operator_id
            )
        if row is None:
            raise LabelNameConflict(f"the inbox already has a label named {name!r}")
        return row

    async def list_for_inbox(
        self, *, tenant_id: UUID, operator_id: UUID, role: Role, inbox_id: UUID
    ) -> list[asyncpg.Record]:
        """The inbox's labels ordered by name."""
        async with self.db.connection() as conn:
            inbox = await conn.fetchrow(sql.INBOX_ACCESS, tenant_id, inbox_id, operator_id)
            if inbox is None:
                raise InboxNotFound()
            if role is Role.OPERATOR and not inbox["caller_subscribed"]:
                raise LabelPermissionDenied("not subscribed to this inbox")
            rows: list[asyncpg.Record] = await conn.fetch(sql.LIST_LABELS, tenant_id, inbox_id)
            return rows

    async def update(
        self,
        *,
        tenant_id: UUID,
        role: Role,
        label_id: UUID,
        name: str | None,
        color: str | None,
    ) -> asyncpg.Record:
        """None = unchanged."""
        _require_manager(role)
        try:
            row = await self.db.fetchrow(sql.UPDATE_LABEL, tenant_id, label_id, name, color)
        except asyncpg.UniqueViolationError as exc:
            raise LabelNameConflict(f"the inbox already has a label named {name!r}") from exc
        if row is None:
            raise LabelNotFound()
        return row

    async def delete(self, *, tenant_id: UUID, role: Role, label_id: UUID) -> None:
        _require_manager(role)
        if await self.db.fetchval(sql.DELETE_LABEL, tenant_id, label_id) is None:
            raise LabelNotFound()

    async def attach(
        self,
        *,
        tenant_id: UUID,
        operator_id: UUID,
        role: Role,
        conversation_id: UUID,
        label_id: UUID,
    ) -> None:
        """Idempotent: an existing attachment is success (also under concurrency)."""
        async with self.db.transaction() as conn:
            await self._authorise(
                conn,
                tenant_id=tenant_id,
                operator_id=operator_id,
                role=role,
                conversation_id=conversation_id,
                label_id=label_id,
                same_inbox=True,
            )
            await conn.execute(sql.ATTACH_LABEL, tenant_id, conversation_id, label_id, uuid7())

    async def detach(
        self,
        *,
        tenant_id: UUID,
        operator_id: UUID,
        role: Role,
        conversation_id: UUID,
        label_id: UUID,
    ) -> None:
        """Idempotent: no attachment is success. No inbox-match check (contract §3.33)."""
        async with self.db.transaction() as conn:
            await self._authorise(
                conn,
                tenant_id=tenant_id,
                operator_id=operator_id,
                role=role,
                conversation_id=conversation_id,
                label_id=label_id,
                same_inbox=False,
            )
            await conn.execute(sql.DETACH_LABEL, tenant_id, conversation_id, label_id)

    @staticmethod
    async def _authorise(
        conn: Connection,
        *,
        tenant_id: UUID,
        operator_id: UUID,
        role: Role,
        conversation_id: UUID,
        label_id: UUID,
        same_inbox: bool,
    ) -> None:
        """Checks in the contract's order: conversation 404 → label 404 → (attach) inbox
        mismatch 400 → OPERATOR not subscribed to the conversation's inbox 403."""
        conversation = await conn.fetchrow(
            sql.LOCK_CONVERSATION, tenant_id, conversation_id, operator_id
        )
        if conversation is None:
            raise ConversationNotFound()
        label_inbox = await conn.fetchval(sql.LOCK_LABEL, tenant_id, label_id)
        if label_inbox is None:
            raise LabelNotFound()
        if same_inbox and label_inbox != conversation["inbox_id"]:
            raise LabelInboxMismatch()
        if role is Role.OPERATOR and not conversation["caller_subscribed"]:
            raise LabelPermissionDenied("not subscribed to the conversation's inbox")
