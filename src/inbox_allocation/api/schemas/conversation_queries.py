"""Query strings of the conversation list and the search, and their response shapes.

List and search queries (docs/decisions.md#pagination): an invalid filter or cursor is a 400
VALIDATION_ERROR listing every failed rule (docs/decisions.md#validation-errors), never silently
ignored; `sort` is matched
and applied case-insensitively (docs/decisions.md#pagination); the search accepts `phone` or `q`
(docs/decisions.md#field-aliases).
"""

from __future__ import annotations

from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from inbox_allocation.api.schemas.common import clamp_per_page
from inbox_allocation.api.schemas.conversations import Conversation
from inbox_allocation.domain.enums import ConversationState
from inbox_allocation.domain.errors import ValidationFailed
from inbox_allocation.domain.ids import parse_uuid
from inbox_allocation.services.conversations import (
    Cursor,
    InvalidCursor,
    ListQuery,
    ListSort,
    PhoneQuery,
    normalise_phone,
)

_STATES = ", ".join(state.value for state in ConversationState)
_SORTS = ", ".join(sort.value for sort in ListSort)


class ConversationListMeta(BaseModel):
    model_config = ConfigDict(extra="forbid")

    has_more: bool = Field(description="True only when more rows follow this page")
    next_cursor: str | None = Field(
        None,
        description="Pass as `cursor` to get the next page; present only when has_more",
        examples=["eyJzb3J0IjoibmV3ZXN0IiwidHMiOiIuLi4iLCJpZCI6Ii4uLiJ9"],
    )
    count: int = Field(description="Number of conversations in this page", examples=[50])


class ConversationList(BaseModel):
    model_config = ConfigDict(extra="forbid")

    conversations: list[Conversation]
    meta: ConversationListMeta


class SearchMeta(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(description="The normalised number searched for", examples=["+14155551001"])
    count: int = Field(examples=[1])


class SearchResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    conversations: list[Conversation]
    meta: SearchMeta


def _uuid_filter(name: str, value: str | None, problems: list[str]) -> UUID | None:
    if not value:  # absent or empty: no filter
        return None
    parsed = parse_uuid(value)
    if parsed is None:
        problems.append(f"{name}: must be a UUID")
    return parsed


def parse_list_query(
    *,
    state: str | None,
    inbox_id: str | None,
    operator_id: str | None,
    label_id: str | None,
    sort: str | None,
    cursor: str | None,
    per_page: str | None,
) -> ListQuery:
    """Validate the list's query string; every failed rule is one `details` entry."""
    problems: list[str] = []
    parsed_state: ConversationState | None = None
    if state:
        if state in ConversationState.__members__:  # case-sensitive, as in the contract
            parsed_state = ConversationState(state)
        else:
            problems.append(f"state: must be one of {_STATES}")
    parsed_sort: ListSort | None = ListSort.NEWEST
    if sort:
        try:
            parsed_sort = ListSort(sort.lower())
        except ValueError:
            parsed_sort = None
            problems.append(f"sort: must be one of {_SORTS} (case-insensitive)")
    parsed_inbox = _uuid_filter("inbox_id", inbox_id, problems)
    parsed_operator = _uuid_filter("operator_id", operator_id, problems)
    parsed_label = _uuid_filter("label_id", label_id, problems)
    parsed_cursor: Cursor | None = None
    if cursor and parsed_sort is not None:  # a cursor is checked against a valid sort only
        try:
            parsed_cursor = Cursor.decode(cursor, parsed_sort)
        except InvalidCursor as exc:
            problems.append(f"cursor: {exc}")
    if problems or parsed_sort is None:
        raise ValidationFailed("invalid query parameters", problems)
    return ListQuery(
        sort=parsed_sort,
        per_page=clamp_per_page(per_page),
        cursor=parsed_cursor,
        state=parsed_state,
        inbox_id=parsed_inbox,
        assigned_operator_id=parsed_operator,
        label_id=parsed_label,
    )


def parse_search_query(*, phone: str | None, q: str | None) -> PhoneQuery:
    """`phone`, or its alias `q`: blank after trimming (or nothing left after
    normalisation) → 400 VALIDATION_ERROR."""
    text = phone if phone is not None and phone.strip() else q
    if text is None or not text.strip():
        raise ValidationFailed("invalid query parameters", ["phone: is required"])
    normalised = normalise_phone(text)
    if normalised is None:
        raise ValidationFailed("invalid query parameters", ["phone: must be a phone number"])
    return normalised
