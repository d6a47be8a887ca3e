"""GET /api/v1/events — the event stream: Server-Sent Events or a JSON page (long poll).

See docs/events.md. Plain Starlette streaming (no SSE library): the protocol is three line
types, and the stream must be driven by the process's event hub, not by a per-client poll.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Header, Query, Request
from starlette.responses import Response, StreamingResponse

from inbox_allocation.api.deps import CallerDep, db_of
from inbox_allocation.api.errors import ERROR_RESPONSES
from inbox_allocation.api.params import parse_id
from inbox_allocation.api.responses import dumps, ok
from inbox_allocation.api.routing import api_router
from inbox_allocation.domain.errors import InvalidQuery
from inbox_allocation.services.event_hub import EventHub
from inbox_allocation.services.events import (
    EVENT_TYPES,
    EventQuery,
    EventStream,
    current_end,
    decode_cursor,
    encode_cursor,
    parse_types,
)

router = api_router(prefix="/api/v1", tags=["events"])

KEEP_ALIVE_SECONDS = 15.0
SSE_BATCH = 500


def _bounded_int(value: str | None, name: str, low: int, high: int, default: int) -> int:
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise InvalidQuery(f"{name} must be an integer from {low} to {high}") from None
    if not low <= number <= high:
        raise InvalidQuery(f"{name} must be an integer from {low} to {high}")
    return number


def hub_of(request: Request) -> EventHub:
    hub: EventHub = request.app.state.event_hub
    return hub


@router.get(
    "/events",
    responses=ERROR_RESPONSES,
    summary="The event stream (SSE or JSON page)",
    description=(
        "Every change that matters to an agent's screen, in cursor order. With "
        "`Accept: text/event-stream`: Server-Sent Events (`id:` the cursor, `event:` the "
        "type, `data:` the event JSON; a comment every 15 s), resumed with `Last-Event-ID` "
        "or `after`; without either, the events committed from now on. Otherwise a JSON "
        "page `{events, next_after}`: pass `next_after` back as `after`; without `after` "
        "the page is empty and `next_after` is the current end. `wait` (0–30 s) holds the "
        "request until an event arrives. An OPERATOR sees the conversation events of the "
        "inboxes it is subscribed to, those about itself and its own status changes; "
        "MANAGER and ADMIN see all of the tenant's. A cursor older than the retention "
        "period → 410 `EVENT_CURSOR_EXPIRED` (the oldest available cursor in `details`). "
        f"Types: {', '.join(EVENT_TYPES)}."
    ),
)
async def get_events(
    *,
    request: Request,
    caller: CallerDep,
    after: Annotated[str | None, Query(description="Resume after this cursor")] = None,
    limit: Annotated[str | None, Query(description="JSON page size, 1–500 (default 100)")] = None,
    wait: Annotated[str | None, Query(description="Long poll, 0–30 s (default 0)")] = None,
    types: Annotated[str | None, Query(description="Comma-separated event types")] = None,
    inbox_id: Annotated[str | None, Query(description="Only this inbox's events")] = None,
    last_event_id: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Response:
    query = EventQuery(
        tenant_id=caller.tenant_id,
        operator_id=caller.operator_id,
        sees_all=caller.is_manager_level,
        types=parse_types(types),
        inbox_id=parse_id(inbox_id, "inbox_id", InvalidQuery) if inbox_id is not None else None,
    )
    page_size = _bounded_int(limit, "limit", 1, 500, 100)
    wait_seconds = _bounded_int(wait, "wait", 0, 30, 0)
    db, hub = db_of(request), hub_of(request)
    streaming = "text/event-stream" in request.headers.get("accept", "")
    cursor = last_event_id if streaming and last_event_id else after
    if cursor is None:
        end = await current_end(db, caller.tenant_id)
        if not streaming:
            return ok({"events": [], "next_after": encode_cursor(end)})
        stream = EventStream(db, query, end)
    else:
        stream = EventStream(db, query, decode_cursor(cursor, "after / Last-Event-ID"))
    if streaming:
        hub.register(stream)
        first: list[dict[str, Any]] = []
        if cursor is not None:
            try:
                # The first page before answering, so an expired cursor is a plain 410.
                first = await stream.read_page(SSE_BATCH)
            except BaseException:
                hub.unregister(stream)
                raise
        # Without a cursor the stream starts at the current end: nothing to read yet (a batch
        # the hub read before the registration starts below the position and is skipped; one
        # that starts above it sends the stream to the database for the gap).
        return StreamingResponse(
            _sse(stream, hub, first),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )
    if wait_seconds == 0:
        events = await stream.read_page(page_size)
    else:
        # Registered before the first read, so every batch the hub reads from then on
        # reaches this reader (docs/events.md, "Fan-out").
        hub.register(stream)
        try:
            events = await stream.read_page(page_size)
            if not events:
                events = await stream.next_events(hub, page_size, float(wait_seconds))
        finally:
            hub.unregister(stream)
    return ok({"events": events, "next_after": encode_cursor(stream.position)})


# Recent frames by event id: an event is the same for every reader that may see it, so a
# thousand streams serialise it once. Bounded; cleared when full.
_FRAMES: dict[str, bytes] = {}
_FRAMES_KEPT = 10_000


def _frame(event: dict[str, Any]) -> bytes:
    frame = _FRAMES.get(event["id"])
    if frame is None:
        if len(_FRAMES) >= _FRAMES_KEPT:
            _FRAMES.clear()
        frame = _FRAMES[event["id"]] = b"id: %s\nevent: %s\ndata: %s\n\n" % (
            event["id"].encode(),
            event["type"].encode(),
            dumps(event),
        )
    return frame


async def _sse(
    stream: EventStream, hub: EventHub, first: list[dict[str, Any]]
) -> AsyncIterator[bytes]:
    try:
        # Opens the stream at once (headers and a first line) even when there is no event.
        yield b": connected\n\n" + b"".join(_frame(event) for event in first)
        while True:
            events = await stream.next_events(hub, SSE_BATCH, KEEP_ALIVE_SECONDS)
            if events:
                yield b"".join(_frame(event) for event in events)
            else:
                yield b": keep-alive\n\n"
    finally:
        hub.unregister(stream)
