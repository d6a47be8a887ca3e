"""Building blocks shared by request and response schemas."""

from __future__ import annotations

import math
from typing import Annotated, Any
from uuid import UUID

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema
from pydantic_core import PydanticCustomError

from inbox_allocation.domain.ids import NIL_UUID, parse_uuid


class RequestBody(BaseModel):
    """Base of every JSON request body.

    Strict types: a string where a number belongs (or a number where a UUID belongs) is a
    malformed body, 400 BAD_REQUEST, as in the original; failed rules are 400
    VALIDATION_ERROR. Unknown fields are ignored.
    """

    model_config = ConfigDict(strict=True, extra="ignore")


def _to_uuid(value: Any) -> UUID:
    if value is None:
        raise ValueError("is required")
    if isinstance(value, UUID):
        return value
    if not isinstance(value, str):
        raise PydanticCustomError("uuid_type", "must be a UUID string")
    parsed = parse_uuid(value)
    if parsed is None:
        raise PydanticCustomError("uuid_parsing", "must be a UUID")
    return parsed


def _not_nil(value: UUID) -> UUID:
    if value == NIL_UUID:
        raise ValueError("is required (the nil UUID counts as missing)")
    return value


_UUID_SCHEMA = WithJsonSchema({"type": "string", "format": "uuid"})

# A UUID in a JSON body: the contract's accepted forms; the nil UUID counts as missing.
BodyUUID = Annotated[UUID, BeforeValidator(_to_uuid), AfterValidator(_not_nil), _UUID_SCHEMA]


class ListMeta(BaseModel):
    """Pagination of operator, inbox and subscription lists (really sliced:
    docs/decisions.md#pagination)."""

    model_config = ConfigDict(extra="forbid")

    page: int = Field(examples=[1])
    per_page: int = Field(examples=[50])
    total: int = Field(description="Number of items across all pages", examples=[3])
    total_pages: int = Field(examples=[1])
    has_more: bool = Field(examples=[False])


DEFAULT_PER_PAGE = 50
MAX_PER_PAGE = 100
# `?page` beyond this is read as this (JSON numbers in `meta` must stay within 64 bits).
MAX_PAGE = 2**31 - 1


def clamp_page(raw: str | None) -> int:
    """`?page`: default 1; < 1 or not an integer → 1; capped at MAX_PAGE."""
    try:
        page = int(raw) if raw is not None else 1
    except ValueError:
        return 1
    return min(max(page, 1), MAX_PAGE)


def clamp_per_page(raw: str | None) -> int:
    """`?per_page`: default 50; < 1 or not an integer → 50; > 100 → 100 (contract)."""
    try:
        per_page = int(raw) if raw is not None else DEFAULT_PER_PAGE
    except ValueError:
        return DEFAULT_PER_PAGE
    if per_page < 1:
        return DEFAULT_PER_PAGE
    return min(per_page, MAX_PER_PAGE)


def list_meta(*, page: int, per_page: int, total: int) -> dict[str, Any]:
    total_pages = math.ceil(total / per_page) if total else 0
    return {
        "page": page,
        "per_page": per_page,
        "total": total,
        "total_pages": total_pages,
        "has_more": page < total_pages,
    }
