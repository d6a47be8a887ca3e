"""Conversation shapes: list/get/search (Conversation), allocate/claim (Allocation),
resolve/deallocate/reassign/move_inbox (Lifecycle); one timestamp
format everywhere (docs/decisions.md#timestamps).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import asyncpg
import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)
from pydantic_core import PydanticCustomError

from inbox_allocation.api.schemas.common import BodyUUID, RequestBody
from inbox_allocation.db.seed_ids import ACME, INBOX_SALES, conversation
from inbox_allocation.domain.phone import is_e164

State = Literal["QUEUED", "ALLOCATED", "RESOLVED"]
# A database row (asyncpg.Record) or any mapping with the same keys.
Row = asyncpg.Record | Mapping[str, Any]


class LabelRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: UUID
    name: str = Field(examples=["Hot Lead"])
    color: str | None = Field(None, description="Omitted when the label has no colour")


class ConversationBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: UUID = Field(examples=[conversation(1)])
    tenant_id: UUID = Field(examples=[ACME])
    inbox_id: UUID = Field(examples=[INBOX_SALES])
    external_conversation_id: str = Field(examples=["ext-001"])
    customer_phone_number: str = Field(examples=["+14155551001"])
    state: State
    assigned_operator_id: UUID | None
    last_message_at: datetime
    message_count: int = Field(examples=[3])
    priority_score: float = Field(examples=[0.75])
    created_at: datetime
    updated_at: datetime
    resolved_at: datetime | None


class Conversation(ConversationBase):
    labels: list[LabelRef] = Field(description="Attached labels, ordered by name")


# Every route that answers with a conversation answers with the Conversation shape, labels
# included; the subclasses only name the routes' schemas (and add allocated_at).
class Lifecycle(Conversation):
    pass


class Allocation(Conversation):
    assigned_operator_id: UUID
    allocated_at: datetime = Field(description="When it was allocated (= updated_at)")


_BASE_FIELDS = tuple(ConversationBase.model_fields)


def render_conversation(row: Row) -> dict[str, Any]:
    """A row with CONVERSATION_COLUMNS and LABELS_JSON → the Conversation shape."""
    data = {field: row[field] for field in _BASE_FIELDS}
    # The labels arrive as JSON text built by PostgreSQL: embed it as is.
    data["labels"] = orjson.Fragment(row["labels"])
    return data


def render_allocation(row: Row) -> dict[str, Any]:
    data = render_conversation(row)
    data["allocated_at"] = row["updated_at"]
    return data


def _e164(value: str) -> str:
    if not is_e164(value):
        raise ValueError("must be an E.164 number such as +14155550100")
    return value


def _rfc3339(value: Any) -> Any:
    """An RFC 3339 timestamp with an explicit offset (`Z` or `±hh:mm`)."""
    if not isinstance(value, str):
        raise PydanticCustomError("datetime_type", "must be an RFC 3339 timestamp string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("must be an RFC 3339 timestamp, e.g. 2026-01-27T10:00:00Z") from None
    if parsed.tzinfo is None:
        raise ValueError("must include a time zone offset (Z or ±hh:mm)")
    return parsed


class InboundMessageRequest(RequestBody):
    """One inbound customer message, sent by the messaging gateway."""

    inbox_id: BodyUUID = Field(examples=[INBOX_SALES])
    external_conversation_id: Annotated[str, StringConstraints(min_length=1, max_length=255)] = (
        Field(description="The gateway's conversation id (1–255 characters)", examples=["wa-8812"])
    )
    customer_phone_number: Annotated[str, AfterValidator(_e164)] = Field(
        description="E.164, e.g. +14155550100", examples=["+14155550100"]
    )
    message_at: Annotated[datetime | None, BeforeValidator(lambda v: v and _rfc3339(v))] = Field(
        None,
        description="When the message was received (RFC 3339; default now; at most 5 minutes "
        "in the future)",
        examples=["2026-01-27T10:00:00Z"],
    )
