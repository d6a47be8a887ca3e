"""The process's one event listener: it polls the delivery watermark and feeds every reader.

One database connection per worker process, never one per SSE client: every `interval`
(100 ms) the hub reads, for each tenant with readers, the tenant's watermark (the xmin of a
fresh snapshot on the node storing its events: on Citus each worker has its own transaction
ids, so watermarks are per tenant); when it has moved, it reads the tenant's events in
[previous watermark, new watermark), plus, for OPERATOR readers, what those operators are
subscribed to now, and hands the batch to each reader of the tenant. Readers filter in
memory (services.events.EventStream). Writers are untouched: no NOTIFY in their
transactions, so allocation pays nothing for the stream.

Polling rather than LISTEN/NOTIFY: a NOTIFY inside the committing transaction takes a
cluster-wide lock at commit, and one sent after commit needs a second round trip on every
state change; 100 ms of polling (ten cheap reads a second per process, and only while it
has readers) bounds the added latency well inside the 500 ms target.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import asyncpg

from inbox_allocation.db.pool import CONNECT_ERRORS, CONNECT_TIMEOUT_SECONDS
from inbox_allocation.logging import get_logger
from inbox_allocation.services.events import EventStream, Row, render_event
from inbox_allocation.sql import events as sql

log = get_logger(__name__)

POLL_INTERVAL_SECONDS = 0.1


@dataclass(frozen=True, slots=True)
class Batch:
    """Every event with an xid in [low, high) of the tenants that had readers."""

    low: int
    high: int
    rows: Mapping[UUID, Sequence[Row]] = field(default_factory=dict)
    # (tenant_id, operator_id) → the inboxes that OPERATOR reader is subscribed to now.
    subscriptions: Mapping[tuple[UUID, UUID], frozenset[UUID]] = field(default_factory=dict)

    # Work shared by every reader of the batch: each event rendered once, the types present.
    _rendered: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)
    _types: dict[int, frozenset[str]] = field(default_factory=dict)

    def extended(self, high: int) -> Batch:
        return Batch(self.low, high, self.rows, self.subscriptions)

    def rendered(self, row: Row) -> dict[str, Any]:
        """The API object of `row`, rendered once for all readers (never mutated)."""
        key = (row["xid"], row["seq"])
        event = self._rendered.get(key)
        if event is None:
            event = self._rendered[key] = render_event(row)
        return event

    def types_of(self, rows: Sequence[Row]) -> frozenset[str]:
        found = self._types.get(id(rows))
        if found is None:
            found = self._types[id(rows)] = frozenset(row["type"] for row in rows)
        return found


class EventHub:
    def __init__(self, dsn: str, interval: float = POLL_INTERVAL_SECONDS) -> None:
        self.dsn = dsn
        self.interval = interval
        self.readers: dict[UUID, set[EventStream]] = defaultdict(set)
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._conn: asyncpg.Connection | None = None
        # The last watermark read per tenant with readers.
        self._marks: dict[UUID, int] = {}

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="event-hub")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            await self._task
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()

    def register(self, stream: EventStream) -> None:
        self.readers[stream.query.tenant_id].add(stream)

    def unregister(self, stream: EventStream) -> None:
        readers = self.readers.get(stream.query.tenant_id)
        if readers is not None:
            readers.discard(stream)
            if not readers:
                del self.readers[stream.query.tenant_id]

    @property
    def reader_count(self) -> int:
        return sum(len(readers) for readers in self.readers.values())

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.interval)
            if self._stopping.is_set():
                return
            if not self.readers:
                self._marks.clear()  # readers that join catch up from the database
                continue
            try:
                await self.poll()
            except CONNECT_ERRORS as exc:  # its own connection: connecting or a statement
                log.warning("event hub: database unavailable", error=f"{type(exc).__name__}")
                await self._drop_connection()
            except Exception:
                log.exception("event hub poll failed")
                await self._drop_connection()

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        self._marks.clear()
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    async def poll(self) -> None:
        """One round: for each tenant with readers, its watermark, and when it moved, the
        tenant's new events."""
        if self._conn is None:
            self._conn = await asyncpg.connect(
                self.dsn, timeout=CONNECT_TIMEOUT_SECONDS,
                server_settings={"timezone": "UTC", "application_name": "inbox-allocation-events"},
            )  # fmt: skip
        for tenant_id in [tenant for tenant in self._marks if tenant not in self.readers]:
            del self._marks[tenant_id]
        for tenant_id in list(self.readers):
            await self._poll_tenant(self._conn, tenant_id)

    async def _poll_tenant(self, conn: asyncpg.Connection, tenant_id: UUID) -> None:
        mark: int = await conn.fetchval(sql.CURRENT_WATERMARK, tenant_id)
        low = self._marks.get(tenant_id)
        self._marks[tenant_id] = mark
        if low is None:
            # The first mark since the tenant's readers appeared: an empty batch that wakes
            # every reader whose position is below it (they read the events in between from
            # the database; later batches start here).
            self._offer(tenant_id, Batch(mark, mark))
            return
        if mark <= low:
            return
        rows = await conn.fetch(sql.BATCH, tenant_id, low, mark)
        subscriptions: dict[tuple[UUID, UUID], frozenset[UUID]] = {}
        operators = {
            reader.query.operator_id
            for reader in self.readers.get(tenant_id, ())
            if not reader.query.sees_all
        }
        if rows and operators:
            found: dict[UUID, set[UUID]] = {operator: set() for operator in operators}
            for sub in await conn.fetch(sql.SUBSCRIPTIONS, tenant_id, list(operators)):
                found[sub["operator_id"]].add(sub["inbox_id"])
            for operator, inboxes in found.items():
                subscriptions[(tenant_id, operator)] = frozenset(inboxes)
        self._offer(tenant_id, Batch(low, mark, {tenant_id: rows} if rows else {}, subscriptions))

    def _offer(self, tenant_id: UUID, batch: Batch) -> None:
        for reader in list(self.readers.get(tenant_id, ())):
            reader.offer(batch)
