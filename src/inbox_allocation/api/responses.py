"""The contract's JSON envelopes, rendered with orjson.

Responses are built as plain dicts (straight from database rows) and serialised once; the
pydantic models in `api.schemas` document them in OpenAPI and tests validate the two agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import orjson
from starlette.responses import Response

from inbox_allocation.domain.errors import ApiError

JSON_MEDIA_TYPE = "application/json; charset=utf-8"


def format_timestamp(value: datetime) -> str:
    """RFC 3339 UTC; microseconds trimmed of trailing zeros (docs/decisions.md#timestamps).

    Built from `isoformat()` (C code, four-digit years included) rather than strftime: a
    page of 50 conversations renders 200 timestamps, and this was most of its CPU."""
    if value.tzinfo is None or value.utcoffset():  # database values are UTC already
        value = value.astimezone(UTC)
    text = value.isoformat()[:-6]  # without the "+00:00"
    if value.microsecond:
        return text.rstrip("0") + "Z"
    return text + "Z"


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_timestamp(value)
    if isinstance(value, UUID):  # asyncpg's UUID subclass, which orjson does not know
        return str(value)
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def dumps(value: Any) -> bytes:
    # PASSTHROUGH_DATETIME routes datetimes to `_default`, i.e. to the contract's format.
    return orjson.dumps(value, default=_default, option=orjson.OPT_PASSTHROUGH_DATETIME)


def now_timestamp() -> str:
    return format_timestamp(datetime.now(UTC))


def json_response(
    body: dict[str, Any], status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(dumps(body), status_code, headers, media_type=JSON_MEDIA_TYPE)


def ok(data: Any, status_code: int = 200) -> Response:
    """Success envelope `{success, data, timestamp}`."""
    return json_response(
        {"success": 200 <= status_code < 300, "data": data, "timestamp": now_timestamp()},
        status_code,
    )


def no_content() -> Response:
    return Response(status_code=204)


def error_body(code: str, message: str, details: Sequence[str] = ()) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = list(details)
    return {"success": False, "error": error, "timestamp": now_timestamp()}


# With bearer credentials (AUTH_MODE token or jwt) every 401 names the scheme.
CHALLENGE = {"WWW-Authenticate": "Bearer"}


def render_api_error(error: ApiError, *, challenge: bool = False) -> Response:
    """The one rendering of every failure: the error envelope, with the error's status and
    headers; `challenge` adds the bearer challenge to a 401 (the server's auth mode, not the
    error, decides it)."""
    headers = dict(error.headers)
    if challenge and error.status == 401:
        headers.update(CHALLENGE)
    return json_response(
        error_body(error.code, error.message, error.details), error.status, headers
    )
