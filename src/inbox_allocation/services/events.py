"""Reading the event stream: cursors, pages, and live streams fed by the process's hub.

A cursor is the position (xid, seq) of an event written as 32 hex digits, so cursors sort as
strings in delivery order. A reader's position means "every event at or below it has been
handled" (delivered, or filtered out); the position (w, 0) means "every event of a
transaction below w", which is what a reader holds after reading up to the watermark `w`.

Two ways to read, with the same result:
- a database page (`EventStream.read_page`): the tenant's deliverable events after the
  position, filtered and visibility-checked by PostgreSQL;
- batches from the hub (services.event_hub): one connection per process polls the watermark
  and reads every new event of the tenants that have readers once; each reader filters the
  batch in memory. A batch starting above the reader's position (the reader joined or fell
  behind between two batches) sends the reader back to a database page, so no event is
  skipped, and events at or below the position are never delivered twice.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import asyncpg
import orjson

from inbox_allocation.api.responses import format_timestamp
from inbox_allocation.db.pool import Database
from inbox_allocation.domain.errors import ApiError, InvalidQuery
from inbox_allocation.sql import events as sql

if TYPE_CHECKING:
    from inbox_allocation.services.event_hub import Batch, EventHub

EVENT_TYPES = (
    "conversation.queued",
    "conversation.message",
    "conversation.allocated",
    "conversation.resolved",
    "conversation.moved",
    "operator.status_changed",
)
_CONVERSATION_TIMESTAMPS = ("last_message_at", "created_at", "updated_at", "resolved_at")
_CURSOR = re.compile(r"[0-9a-f]{32}")

Position = tuple[int, int]
# A database row (asyncpg.Record) or any mapping with the same keys.
Row = asyncpg.Record | Mapping[str, Any]


class EventCursorExpired(ApiError):
    status, code = 410, "EVENT_CURSOR_EXPIRED"
    message = "events after this cursor were deleted (older than the retention period)"


def encode_cursor(position: Position) -> str:
    return f"{position[0]:016x}{position[1]:016x}"


def decode_cursor(text: str, name: str = "after") -> Position:
    if not _CURSOR.fullmatch(text):
        raise InvalidQuery(f"{name} is not an event cursor")
    return int(text[:16], 16), int(text[16:], 16)


def parse_types(text: str | None) -> frozenset[str] | None:
    """`types=a,b` → the set of event types; unknown names are refused (400)."""
    if text is None:
        return None
    names = frozenset(part.strip() for part in text.split(",") if part.strip())
    unknown = sorted(names - set(EVENT_TYPES))
    if not names or unknown:
        raise InvalidQuery(f"types must be a comma-separated list of {', '.join(EVENT_TYPES)}")
    return names


def _api_timestamp(value: Any) -> Any:
    if isinstance(value, str):
        return format_timestamp(datetime.fromisoformat(value))
    return value


def render_event(row: Row) -> dict[str, Any]:
    """A row of EVENT_COLUMNS → the API's event object."""
    data = orjson.loads(row["data"])
    conversation = data.get("conversation")
    if conversation is not None:
        for key in _CONVERSATION_TIMESTAMPS:
            conversation[key] = _api_timestamp(conversation.get(key))
    return {
        "id": encode_cursor((row["xid"], row["seq"])),
        "type": row["type"],
        "occurred_at": row["occurred_at"],
        "tenant_id": row["tenant_id"],
        "data": data,
    }


@dataclass(frozen=True, slots=True)
class EventQuery:
    """Whose events, and which: the caller's tenant and visibility plus the filters."""

    tenant_id: UUID
    operator_id: UUID
    sees_all: bool  # MANAGER / ADMIN
    types: frozenset[str] | None = None
    inbox_id: UUID | None = None

    def selects(self, row: Row, subscribed: frozenset[UUID]) -> bool:
        """The filters and the visibility rule of sql.events.PAGE, in memory."""
        if self.types is not None and row["type"] not in self.types:
            return False
        inboxes = (row["inbox_id"], row["from_inbox_id"])
        if self.inbox_id is not None and self.inbox_id not in inboxes:
            return False
        if self.sees_all or row["operator_id"] == self.operator_id:
            return True
        return str(row["type"]).startswith("conversation.") and any(
            inbox in subscribed for inbox in inboxes if inbox is not None
        )


@dataclass(eq=False)
class EventStream:
    """One reader: its query, its position, and the batches the hub handed it."""

    db: Database
    query: EventQuery
    position: Position
    pending: list[Batch] = field(default_factory=list)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    # The last database page was full: more events wait in the database.
    behind: bool = False

    async def read_page(self, limit: int) -> list[dict[str, Any]]:
        """The next deliverable events from the database; moves the position past them (and
        up to the watermark when the page is not full). 410 when events after the position
        were purged."""
        query = self.query
        async with self.db.connection() as conn:
            watermark = await conn.fetchval(sql.CURRENT_WATERMARK, query.tenant_id)
            rows = await conn.fetch(
                sql.PAGE, query.tenant_id, self.position[0], self.position[1], query.sees_all,
                query.operator_id, sorted(query.types) if query.types else None,
                query.inbox_id, limit, watermark,
            )  # fmt: skip
        first = rows[0]
        if first["purged_xid"] is not None and self.position < (
            first["purged_xid"],
            first["purged_seq"],
        ):
            oldest = encode_cursor((first["purged_xid"], first["purged_seq"]))
            raise EventCursorExpired(details=[f"oldest_available_cursor: {oldest}"])
        events = [render_event(row) for row in rows if row["xid"] is not None]
        if events:
            self.position = (rows[-1]["xid"], rows[-1]["seq"])
        self.behind = len(events) >= limit
        if not self.behind:
            self.position = max(self.position, (first["watermark"], 0))
        return events

    def offer(self, batch: Batch) -> None:
        """Called by the hub for every batch it reads while this reader is registered."""
        last = self.pending[-1] if self.pending else None
        rows = batch.rows.get(self.query.tenant_id, ())
        if (
            last is not None and not rows
            and not last.rows.get(self.query.tenant_id) and last.high == batch.low
        ):  # fmt: skip
            # Nothing for this tenant: extend the previous empty batch instead of queueing.
            self.pending[-1] = last.extended(batch.high)
            return
        gap = self.position[0] < batch.low
        if not gap and not self.pending and not self._may_select(batch, rows):
            # Nothing here for this reader (types it does not follow): move on without
            # waking it; with a thousand readers most batches end here.
            self.position = max(self.position, (batch.high, 0))
            return
        self.pending.append(batch)
        if rows or gap:
            # New events, or a gap to read from the database.
            self.wake.set()

    def _may_select(self, batch: Batch, rows: Sequence[Row]) -> bool:
        types = self.query.types
        return bool(rows) and (types is None or not types.isdisjoint(batch.types_of(rows)))

    async def take(self, limit: int) -> list[dict[str, Any]]:
        """Events of the pending batches, in order, at most `limit`; a database page when
        a batch starts above the position (there may be events in between)."""
        if self.behind:
            return await self.read_page(limit)
        events: list[dict[str, Any]] = []
        while self.pending and len(events) < limit:
            batch = self.pending[0]
            if self.position[0] < batch.low:
                events += await self.read_page(limit - len(events))
                if len(events) >= limit or self.position[0] < batch.low:
                    return events  # a full page: the rest on the next call
                continue
            self.pending.pop(0)
            subscribed = batch.subscriptions.get(
                (self.query.tenant_id, self.query.operator_id), frozenset()
            )
            rows: Sequence[Row] = batch.rows.get(self.query.tenant_id, ())
            for row in rows:
                position = (row["xid"], row["seq"])
                if position <= self.position:
                    continue
                if self.query.selects(row, subscribed):
                    events.append(batch.rendered(row))
                self.position = position
                if len(events) >= limit:
                    if row is not rows[-1]:
                        # Keep the batch's remaining rows for the next call.
                        self.pending.insert(0, batch)
                    return events
            self.position = max(self.position, (batch.high, 0))
        return events

    async def next_events(
        self, hub: EventHub, limit: int, wait_seconds: float
    ) -> list[dict[str, Any]]:
        """Waits (registered with the hub) up to `wait_seconds` for at least one event."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_seconds
        while True:
            events = await self.take(limit)
            if events:
                return events
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            self.wake.clear()
            try:
                await asyncio.wait_for(self.wake.wait(), remaining)
            except TimeoutError:
                return []


async def current_end(db: Database, tenant_id: UUID) -> Position:
    """The position after every event of the tenant that is deliverable now."""
    # Its own statement outside any transaction: on Citus only so is it read on the tenant's
    # node (sql.events.CURRENT_WATERMARK).
    async with db.connection() as conn:
        watermark: int = await conn.fetchval(sql.CURRENT_WATERMARK, tenant_id)
    return (watermark, 0)
