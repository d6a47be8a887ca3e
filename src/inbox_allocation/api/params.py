"""Request parameters shared by several routers: paging and UUIDs in paths or queries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from uuid import UUID

from fastapi import Depends, Query

from inbox_allocation.api.schemas.common import clamp_page, clamp_per_page
from inbox_allocation.domain.errors import ApiError, BadRequest
from inbox_allocation.domain.ids import parse_uuid


def parse_id(value: str, name: str, error: type[ApiError] = BadRequest) -> UUID:
    """A UUID from a path or query value, or the route's error code."""
    parsed = parse_uuid(value)
    if parsed is None:
        raise error(f"{name} must be a UUID")
    return parsed


@dataclass(frozen=True, slots=True)
class Pagination:
    page: int
    per_page: int


async def pagination(
    page: Annotated[
        str | None,
        Query(description="Page number, from 1 (default 1; < 1 or not an integer → 1)"),
    ] = None,
    per_page: Annotated[
        str | None,
        Query(description="Items per page (default 50; < 1 or not an integer → 50; max 100)"),
    ] = None,
) -> Pagination:
    return Pagination(clamp_page(page), clamp_per_page(per_page))


PaginationDep = Annotated[Pagination, Depends(pagination)]
