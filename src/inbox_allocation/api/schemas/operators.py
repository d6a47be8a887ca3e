"""Operator shapes and their request bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from inbox_allocation.api.schemas.common import ListMeta, RequestBody
from inbox_allocation.db.seed_ids import ACME, ACME_ADMIN

RoleName = Literal["OPERATOR", "MANAGER", "ADMIN"]


def _required(value: Any) -> Any:
    """null counts as missing (VALIDATION_ERROR), not as a wrong type (BAD_REQUEST)."""
    if value is None:
        raise ValueError("is required")
    return value


_ROLE_DESCRIPTION = "Exactly OPERATOR, MANAGER or ADMIN (case-sensitive)"


class OperatorOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: UUID = Field(examples=[ACME_ADMIN])
    tenant_id: UUID = Field(examples=[ACME])
    role: RoleName = Field(examples=["ADMIN"])
    max_concurrent_conversations: int | None = Field(
        description="At most this many conversations via allocate/claim; null = unlimited",
        examples=[None],
    )
    created_at: datetime
    updated_at: datetime


class OperatorList(BaseModel):
    model_config = ConfigDict(extra="forbid")

    operators: list[OperatorOut]
    meta: ListMeta


_CAPACITY_DESCRIPTION = (
    "Capacity: allocate and claim answer 409 CAPACITY_REACHED once the operator holds this "
    "many ALLOCATED conversations (a manager's reassign may exceed it); null = unlimited"
)
Capacity = Annotated[int, Field(ge=1, le=100_000)]


class OperatorCreate(RequestBody):
    role: Annotated[RoleName, BeforeValidator(_required)] = Field(
        description=_ROLE_DESCRIPTION, examples=["OPERATOR"]
    )
    max_concurrent_conversations: Capacity | None = Field(
        None, description=_CAPACITY_DESCRIPTION, examples=[5]
    )


class OperatorUpdate(RequestBody):
    """At least one field. An absent field is left unchanged; null capacity = unlimited."""

    role: RoleName | None = Field(
        None,
        description=_ROLE_DESCRIPTION + ". The caller cannot demote itself and the tenant's "
        "last ADMIN cannot be demoted (409).",
        examples=["MANAGER"],
    )
    max_concurrent_conversations: Capacity | None = Field(
        None, description=_CAPACITY_DESCRIPTION, examples=[5]
    )

    @model_validator(mode="after")
    def _something_to_change(self) -> OperatorUpdate:
        if self.role is None and "max_concurrent_conversations" not in self.model_fields_set:
            raise ValueError("role or max_concurrent_conversations is required")
        if "role" in self.model_fields_set and self.role is None:
            raise ValueError("role: must not be null")
        return self

    @property
    def sets_capacity(self) -> bool:
        return "max_concurrent_conversations" in self.model_fields_set
