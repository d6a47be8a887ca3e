"""API token shapes (docs/authentication.md): the secret appears only in `TokenCreated`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from inbox_allocation.api.schemas.common import RequestBody


def _required(value: Any) -> Any:
    """null counts as missing (VALIDATION_ERROR), not as a wrong type (BAD_REQUEST)."""
    if value is None:
        raise ValueError("is required")
    return value


class TokenCreate(RequestBody):
    name: Annotated[str, BeforeValidator(_required)] = Field(
        min_length=1, max_length=100, description="What the token is for", examples=["laptop"]
    )
    expires_in_days: int | None = Field(
        None, ge=1, le=3650, description="Days until it expires; absent = never", examples=[90]
    )


class TokenCreated(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: UUID
    name: str = Field(examples=["laptop"])
    token: str = Field(
        description="The API token: send it as `Authorization: Bearer <token>`. Shown only "
        "in this response; only its SHA-256 hash is kept.",
        examples=["iat_" + "A" * 43],
    )
    created_at: datetime
    expires_at: datetime | None


class TokenOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: UUID
    name: str = Field(examples=["laptop"])
    created_at: datetime
    expires_at: datetime | None = Field(description="null = never expires")
    last_used_at: datetime | None = Field(
        description="Last authenticated use (updated about once a minute at most)"
    )
    revoked_at: datetime | None
