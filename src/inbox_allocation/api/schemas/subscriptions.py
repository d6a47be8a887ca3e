"""Operator ↔ inbox subscriptions."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from inbox_allocation.api.schemas.common import BodyUUID, ListMeta, RequestBody


class SubscriptionOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: UUID = Field(examples=["40000000-0000-0000-0000-000000000001"])
    operator_id: UUID = Field(examples=["30000000-0000-0000-0000-000000000001"])
    inbox_id: UUID = Field(examples=["20000000-0000-0000-0000-000000000001"])
    created_at: datetime = Field(description="When the operator was subscribed")


class SubscriptionList(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subscriptions: list[SubscriptionOut]
    meta: ListMeta


class SubscriptionCreate(RequestBody):
    operator_id: BodyUUID = Field(
        description="Operator of the same tenant to subscribe",
        examples=["30000000-0000-0000-0000-000000000010"],
    )
