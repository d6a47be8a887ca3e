"""Operator ↔ inbox subscriptions."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from inbox_allocation.api.schemas.common import BodyUUID, ListMeta, RequestBody
from inbox_allocation.db.seed_ids import ACME_ADMIN, ACME_OP10, ACME_SUBSCRIPTION, INBOX_SALES


class SubscriptionOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: UUID = Field(examples=[ACME_SUBSCRIPTION])
    operator_id: UUID = Field(examples=[ACME_ADMIN])
    inbox_id: UUID = Field(examples=[INBOX_SALES])
    created_at: datetime = Field(description="When the operator was subscribed")


class SubscriptionList(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subscriptions: list[SubscriptionOut]
    meta: ListMeta


class SubscriptionCreate(RequestBody):
    operator_id: BodyUUID = Field(
        description="Operator of the same tenant to subscribe",
        examples=[ACME_OP10],
    )
