"""Operator status (contract §4.4, §3.1–3.2)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from inbox_allocation.api.schemas.common import RequestBody


class OperatorStatusOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    operator_id: UUID = Field(examples=["30000000-0000-0000-0000-000000000004"])
    status: Literal["AVAILABLE", "OFFLINE"]
    last_status_change_at: datetime


class StatusChange(RequestBody):
    status: Literal["AVAILABLE", "OFFLINE"] = Field(
        description="Exactly AVAILABLE or OFFLINE (case-sensitive)", examples=["OFFLINE"]
    )
