"""Reading conversations: the keyset-paginated list, one conversation, search by phone.

Visibility (docs/decisions.md#visibility): role OPERATOR sees only the inboxes it is subscribed to;
MANAGER and ADMIN see the whole tenant. Every conversation carries its labels
(docs/decisions.md#labels-in-responses), loaded by the same statement (one round trip per page).
"""

from __future__ import annotations

import base64
import binascii
import math
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

import asyncpg
import orjson

from inbox_allocation.db.pool import Database
from inbox_allocation.domain.clock import Clock, utc_now
from inbox_allocation.domain.enums import ConversationState, Role
from inbox_allocation.domain.errors import NotFound, ValidationFailed
from inbox_allocation.domain.ids import parse_uuid
from inbox_allocation.sql import conversations as sql

MAX_CURSOR_CHARS = 512
SEARCH_LIMIT = 100  # at most 100 rows, no pagination (docs/decisions.md#search)


class ListSort(StrEnum):
    NEWEST = "newest"  # last_message_at DESC, id DESC
    OLDEST = "oldest"  # last_message_at ASC, id ASC
    PRIORITY = "priority"  # the queue: score DESC, last_message_at ASC, id ASC (allocation)


class InvalidCursor(ValueError):
    """The cursor is not one this service issued (or was issued for another sort)."""


@dataclass(frozen=True, slots=True)
class Cursor:
    """Position after the last row of a page: the sort and that row's key values.

    Opaque to clients: URL-safe base64 (with padding) of a JSON object
    `{"sort", "ts", "id"[, "score", "at"]}`. For sort=priority, `score` is the float8 the
    list ordered by and `at` the instant (epoch seconds) priorities were evaluated at: every
    page uses the first page's instant, so the next page continues exactly where this one
    stopped even though priorities move with time.
    """

    sort: ListSort
    last_message_at: datetime
    id: UUID
    score: float | None = None
    at: float | None = None

    @classmethod
    def after(cls, sort: ListSort, row: asyncpg.Record, at: float | None) -> Cursor:
        score = float(row["sort_score"]) if sort is ListSort.PRIORITY else None
        return cls(sort, row["last_message_at"], row["id"], score, at)

    def encode(self) -> str:
        payload: dict[str, Any] = {
            "sort": self.sort.value,
            "ts": self.last_message_at.isoformat(),
            "id": str(self.id),
        }
        if self.score is not None:
            payload["score"] = self.score
            payload["at"] = self.at
        return base64.urlsafe_b64encode(orjson.dumps(payload)).decode("ascii")

    @classmethod
    def decode(cls, token: str, sort: ListSort) -> Cursor:
        """The cursor in `token`, which must have been issued for `sort`."""
        if len(token) > MAX_CURSOR_CHARS:
            raise InvalidCursor("is too long")
        try:
            raw = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True)
            payload = orjson.loads(raw)
        except (binascii.Error, ValueError) as exc:  # orjson.JSONDecodeError is a ValueError
            raise InvalidCursor("is not a cursor issued by this service") from exc
        if not isinstance(payload, dict):
            raise InvalidCursor("is not a cursor issued by this service")
        if payload.get("sort") != sort.value:
            raise InvalidCursor(f"was issued for another sort (not sort={sort.value})")
        ts, raw_id, score = payload.get("ts"), payload.get("id"), payload.get("score")
        try:
            last_message_at = datetime.fromisoformat(ts) if isinstance(ts, str) else None
        except ValueError:
            last_message_at = None
        conversation_id = parse_uuid(raw_id) if isinstance(raw_id, str) else None
        if last_message_at is None or last_message_at.tzinfo is None or conversation_id is None:
            raise InvalidCursor("is not a cursor issued by this service")
        if sort is not ListSort.PRIORITY:
            return cls(sort, last_message_at, conversation_id)
        at = payload.get("at")
        if not isinstance(score, int | float) or not isinstance(at, int | float):
            raise InvalidCursor("is not a cursor issued by this service")
        if not (_is_finite_number(score) and _is_finite_number(at)):
            raise InvalidCursor("is not a cursor issued by this service")
        return cls(sort, last_message_at, conversation_id, float(score), float(at))


def _is_finite_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True, slots=True)
class ListQuery:
    """A validated GET /conversations request."""

    sort: ListSort = ListSort.NEWEST
    per_page: int = 50
    cursor: Cursor | None = None
    state: ConversationState | None = None
    inbox_id: UUID | None = None
    assigned_operator_id: UUID | None = None
    label_id: UUID | None = None


@dataclass(frozen=True, slots=True)
class ConversationPage:
    rows: list[asyncpg.Record]
    has_more: bool
    next_cursor: str | None = None


@dataclass(frozen=True, slots=True)
class PhoneQuery:
    """A normalised phone search: the number as reported and the stored forms it matches."""

    display: str
    candidates: tuple[str, str]


def normalise_phone(text: str) -> PhoneQuery | None:
    """Trim and drop spaces, dashes, dots and parentheses (docs/decisions.md#search).

    A `+` sent unencoded in a query string arrives as a space, so the number matches both
    `+digits` (E.164, how numbers are stored) and `digits`; it is reported as `+digits` when
    it is a plain digit string. None when nothing is left to search for.
    """
    compact = text.strip().translate(str.maketrans("", "", " -.()"))
    bare = compact.removeprefix("+")
    if not bare or "\x00" in bare:  # PostgreSQL text cannot hold NUL
        return None
    display = f"+{bare}" if bare.isascii() and bare.isdigit() else compact
    return PhoneQuery(display, (f"+{bare}", bare))


_LIST_STATEMENTS: dict[ListSort, str] = {
    ListSort.NEWEST: sql.LIST_NEWEST,
    ListSort.OLDEST: sql.LIST_OLDEST,
    ListSort.PRIORITY: sql.LIST_BY_PRIORITY,
}


class _Fragments:
    """WHERE fragments appended to a statement, numbering their parameters after its own."""

    def __init__(self, args: list[Any]) -> None:
        self.args = args
        self.sql: list[str] = []

    def add(self, fragment: str, value: Any) -> None:
        self.args.append(value)
        self.sql.append(fragment.format(n=len(self.args)))

    def into(self, statement: str) -> str:
        return statement.replace("/*filters*/", "".join(self.sql).strip())


def _queue_statement(
    operator_id: UUID, role: Role, query: ListQuery, args: list[Any]
) -> str | None:
    """sort=priority: the queue (QUEUED conversations) in allocation order, read from the
    per-inbox allocation indexes (sql.LIST_BY_PRIORITY), never by sorting the tenant. None:
    the page is empty (queued conversations have no operator)."""
    if query.state not in (None, ConversationState.QUEUED):
        raise ValidationFailed(
            "invalid query parameters",
            ["sort: priority lists the queue: state must be QUEUED or omitted"],
        )
    if query.assigned_operator_id is not None:
        return None
    if query.label_id is not None:
        args.append(query.label_id)  # $7
        where = _Fragments(args)
        if query.inbox_id is not None:
            where.add(sql.LIST_WHERE_INBOX, query.inbox_id)
        if role is Role.OPERATOR:
            where.add(sql.VISIBLE_TO_OPERATOR, operator_id)
        return where.into(sql.LIST_BY_PRIORITY_WITH_LABEL)
    where = _Fragments(args)
    if query.inbox_id is not None:
        where.add(sql.PRIORITY_WHERE_INBOX, query.inbox_id)
    if role is Role.OPERATOR:
        where.add(sql.PRIORITY_VISIBLE_TO_OPERATOR, operator_id)
    return where.into(sql.LIST_BY_PRIORITY_AFTER if query.cursor else sql.LIST_BY_PRIORITY)


class ConversationService:
    def __init__(self, db: Database, clock: Clock = utc_now) -> None:
        self.db = db
        self.clock = clock

    async def list_page(
        self, *, tenant_id: UUID, operator_id: UUID, role: Role, query: ListQuery
    ) -> ConversationPage:
        planned = self.list_statement(
            tenant_id=tenant_id, operator_id=operator_id, role=role, query=query
        )
        if planned is None:
            return ConversationPage([], has_more=False)
        statement, args, at = planned
        rows = await self.db.fetch(statement, *args)
        if len(rows) <= query.per_page:
            return ConversationPage(rows, has_more=False)
        page = rows[: query.per_page]
        return ConversationPage(page, True, Cursor.after(query.sort, page[-1], at).encode())

    def list_statement(
        self, *, tenant_id: UUID, operator_id: UUID, role: Role, query: ListQuery
    ) -> tuple[str, list[Any], float | None] | None:
        """The statement, its arguments and the priority instant of a list page; None when
        the page is empty without asking (tests EXPLAIN every variant)."""
        cursor = query.cursor
        args: list[Any] = [
            tenant_id,
            query.per_page + 1,
            cursor.last_message_at if cursor else None,
            cursor.id if cursor else None,
        ]
        if query.sort is ListSort.PRIORITY:
            at = cursor.at if cursor and cursor.at is not None else self.clock().timestamp()
            args += [cursor.score if cursor else None, at]
            statement = _queue_statement(operator_id, role, query, args)
            return None if statement is None else (statement, args, at)
        where = _Fragments(args)
        if query.state is not None:
            where.add(sql.LIST_WHERE_STATE, query.state.value)
        if query.inbox_id is not None:
            where.add(sql.LIST_WHERE_INBOX, query.inbox_id)
        if query.assigned_operator_id is not None:
            where.add(sql.LIST_WHERE_ASSIGNED_TO, query.assigned_operator_id)
        if query.label_id is not None:
            where.add(sql.LIST_WHERE_HAS_LABEL, query.label_id)
        if role is Role.OPERATOR:
            where.add(sql.VISIBLE_TO_OPERATOR, operator_id)
        return where.into(_LIST_STATEMENTS[query.sort]), args, None

    async def get(
        self, *, tenant_id: UUID, operator_id: UUID, role: Role, conversation_id: UUID
    ) -> asyncpg.Record:
        """Missing, another tenant's, or in an inbox an OPERATOR is not subscribed to → 404."""
        row = await self.db.fetchrow(sql.GET_CONVERSATION, tenant_id, conversation_id, operator_id)
        if row is None or (role is Role.OPERATOR and not row["caller_subscribed"]):
            raise NotFound("conversation not found")
        return row

    async def search(
        self, *, tenant_id: UUID, operator_id: UUID, role: Role, phone: PhoneQuery
    ) -> list[asyncpg.Record]:
        """Exact number match, newest first (created_at DESC, id DESC), at most 100 rows."""
        with_plus, bare = phone.candidates
        where = _Fragments([tenant_id, with_plus, bare, SEARCH_LIMIT])
        if role is Role.OPERATOR:
            where.add(sql.VISIBLE_TO_OPERATOR, operator_id)
        return await self.db.fetch(where.into(sql.SEARCH_BY_PHONE), *where.args)
