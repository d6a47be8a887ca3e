"""Operator shapes (contract §4.5, §3.11–3.16) and their request bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from inbox_allocation.api.schemas.common import ListMeta, RequestBody

RoleName = Literal["OPERATOR", "MANAGER", "ADMIN"]


def _required(value: Any) -> Any:
    """null counts as missing (VALIDATION_ERROR), not as a wrong type (BAD_REQUEST)."""
    if value is None:
        raise ValueError("is required")
    return value


_ROLE_DESCRIPTION = "Exactly OPERATOR, MANAGER or ADMIN (case-sensitive)"


class OperatorOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: UUID = Field(examples=["30000000-0000-0000-0000-000000000001"])
    tenant_id: UUID = Field(examples=["10000000-0000-0000-0000-000000000001"])
    role: RoleName = Field(examples=["ADMIN"])
    created_at: datetime
    updated_at: datetime


class OperatorList(BaseModel):
    model_config = ConfigDict(extra="forbid")

    operators: list[OperatorOut]
    meta: ListMeta


class OperatorCreate(RequestBody):
    role: Annotated[RoleName, BeforeValidator(_required)] = Field(
        description=_ROLE_DESCRIPTION, examples=["OPERATOR"]
    )


class OperatorUpdate(RequestBody):
    role: Annotated[RoleName, BeforeValidator(_required)] = Field(
        description=_ROLE_DESCRIPTION + ". The caller cannot demote itself and the tenant's "
        "last ADMIN cannot be demoted (409).",
        examples=["MANAGER"],
    )
