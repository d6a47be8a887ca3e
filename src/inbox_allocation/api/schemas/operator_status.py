"""Operator status."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from inbox_allocation.api.schemas.common import RequestBody
from inbox_allocation.db.seed_ids import ACME_OP4


class OperatorStatusOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    operator_id: UUID = Field(examples=[ACME_OP4])
    status: Literal["AVAILABLE", "BUSY", "OFFLINE"]
    last_status_change_at: datetime
    active_conversations: int = Field(
        description="Conversations currently ALLOCATED to the operator", examples=[2]
    )
    max_concurrent_conversations: int | None = Field(
        description="Capacity for allocate/claim; null = unlimited", examples=[5]
    )


class StatusChange(RequestBody):
    status: Literal["AVAILABLE", "BUSY", "OFFLINE"] = Field(
        description=(
            "AVAILABLE (receives conversations), BUSY (keeps its conversations, receives none, "
            "no grace period) or OFFLINE (grace period for its conversations); case-sensitive"
        ),
        examples=["OFFLINE"],
    )
