"""Queue statistics (GET /api/v1/stats, docs/decisions.md#queue-statistics): one entry per inbox of
the tenant.

`data` is an object, `{"inboxes": [...]}`, rather than a bare list: it reads like the other
list responses (`{"inboxes": …, "meta": …}`) and leaves room for tenant-wide figures later
without breaking clients. Every inbox of the tenant is listed, in creation order, also when
all its numbers are 0.
"""

from __future__ import annotations

from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from inbox_allocation.db.seed_ids import INBOX_SALES


class InboxStats(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inbox_id: UUID = Field(examples=[INBOX_SALES])
    queued: int = Field(ge=0, description="QUEUED conversations of the inbox", examples=[12])
    allocated: int = Field(ge=0, description="ALLOCATED conversations of the inbox", examples=[4])
    oldest_queued_wait_seconds: float | None = Field(
        ge=0,
        description=(
            "Seconds since the last message of the longest-waiting QUEUED conversation "
            "(now − min(last_message_at)), a number with millisecond precision (a float, "
            "like Prometheus' seconds); null when nothing is queued"
        ),
        examples=[93.417],
    )
    available_operators: int = Field(
        ge=0,
        description="Operators subscribed to the inbox whose status is AVAILABLE",
        examples=[3],
    )


class QueueStats(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inboxes: list[InboxStats] = Field(
        description="Every inbox of the tenant, oldest first (zeros when idle)"
    )
