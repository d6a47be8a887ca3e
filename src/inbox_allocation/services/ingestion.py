"""Receiving customer messages from the messaging gateway (decisions.md, fixing D-29)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

import asyncpg
from uuid_utils.compat import uuid7

from inbox_allocation.db.pool import Database
from inbox_allocation.domain.clock import Clock, utc_now
from inbox_allocation.domain.errors import InboxNotFound, ValidationFailed
from inbox_allocation.sql import ingestion as sql

# A gateway's clock may run a little ahead of ours; further ahead is a client bug.
MAX_CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class InboundMessage:
    inbox_id: UUID
    external_conversation_id: str
    customer_phone_number: str
    message_at: datetime | None = None  # None: now


class IngestionService:
    def __init__(self, db: Database, clock: Clock = utc_now) -> None:
        self.db = db
        self.clock = clock

    async def record_message(
        self, *, tenant_id: UUID, message: InboundMessage
    ) -> tuple[asyncpg.Record, bool]:
        """The conversation after this message, and whether it was created by it."""
        now = self.clock()
        message_at = message.message_at or now
        if message_at > now + MAX_CLOCK_SKEW:
            raise ValidationFailed(
                details=["message_at: must not be more than 5 minutes in the future"]
            )
        async with self.db.transaction() as conn:
            upserted = await conn.fetchrow(
                sql.UPSERT_MESSAGE, tenant_id, message.inbox_id,
                message.external_conversation_id, message.customer_phone_number, message_at,
                uuid7(),
            )  # fmt: skip
            if upserted is None:
                raise InboxNotFound()
            row = await conn.fetchrow(sql.UPSERTED_CONVERSATION, tenant_id, upserted["id"])
        assert row is not None  # written by this transaction
        return row, bool(upserted["created"])
