"""Labels (docs/decisions.md#labels).

Rules: the name is trimmed, not empty and at most 64 characters; the colour is optional and,
when given, `#RRGGBB` (the Go service stored anything else into a 7-character column and
failed with a 500).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Self
from uuid import UUID

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from inbox_allocation.api.schemas.common import BodyUUID, RequestBody
from inbox_allocation.db.seed_ids import ACME, ACME_MANAGER, HOT_LEAD, INBOX_SALES, conversation

NAME_MAX_CHARS = 64
_COLOR = re.compile(r"#[0-9A-Fa-f]{6}")


def _required(value: Any) -> Any:
    if value is None:
        raise ValueError("is required")
    return value


def _label_name(value: str) -> str:
    name = value.strip()
    if not name:
        raise ValueError("must not be blank")
    if len(name) > NAME_MAX_CHARS:
        raise ValueError(f"must be at most {NAME_MAX_CHARS} characters")
    if "\x00" in name:
        raise ValueError("must not contain NUL characters")
    return name


def _color(value: str) -> str:
    if not _COLOR.fullmatch(value):
        raise ValueError("must be a colour written #RRGGBB, e.g. #FF5733")
    return value


LabelName = Annotated[
    str,
    AfterValidator(_label_name),
    Field(
        description=f"Trimmed; not blank; at most {NAME_MAX_CHARS} characters; unique in the "
        "inbox (exact, case-sensitive)",
        examples=["Hot Lead"],
    ),
]
LabelColor = Annotated[
    str,
    AfterValidator(_color),
    Field(description="`#RRGGBB`", examples=["#FF5733"]),
]


class Label(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: UUID = Field(examples=[HOT_LEAD])
    tenant_id: UUID = Field(examples=[ACME])
    inbox_id: UUID = Field(examples=[INBOX_SALES])
    name: str = Field(examples=["Hot Lead"])
    color: str | None = Field(examples=["#FF5733"])
    created_by: UUID | None = Field(
        description="The operator that created it (null once deleted)",
        examples=[ACME_MANAGER],
    )
    created_at: datetime


class LabelCreate(RequestBody):
    inbox_id: BodyUUID = Field(examples=[INBOX_SALES])
    name: Annotated[LabelName, BeforeValidator(_required)]
    color: LabelColor | None = None


class LabelUpdate(RequestBody):
    """At least one field; null or absent = unchanged (a colour cannot be cleared)."""

    name: LabelName | None = None
    color: LabelColor | None = None

    @model_validator(mode="after")
    def _something_to_change(self) -> Self:
        if self.name is None and self.color is None:
            raise ValueError("at least one of name or color is required")
        return self


class LabelAttachment(RequestBody):
    conversation_id: BodyUUID = Field(examples=[conversation(1)])
    label_id: BodyUUID = Field(examples=[HOT_LEAD])
