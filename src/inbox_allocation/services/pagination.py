"""Page-number pagination of the admin lists (operators, inboxes, subscriptions)."""

from __future__ import annotations

from typing import Any

from inbox_allocation.db.pool import Connection

# OFFSET is a bigint: an absurd ?page must not overflow it.
_MAX_OFFSET = 2**62


async def fetch_page(
    conn: Connection,
    list_sql: str,
    count_sql: str,
    *args: Any,
    page: int,
    per_page: int,
) -> tuple[list[dict[str, Any]], int]:
    """One page of rows and the number of all matching rows (really sliced:
    docs/decisions.md#pagination).

    `list_sql` takes `args` then LIMIT and OFFSET and returns a `total` column (count over
    all matching rows); `count_sql` takes `args` and is only run for a page past the end,
    which has no row to carry the total.
    """
    offset = min((page - 1) * per_page, _MAX_OFFSET)
    rows = await conn.fetch(list_sql, *args, per_page, offset)
    if rows:
        total = int(rows[0]["total"])
    elif offset == 0:
        total = 0
    else:
        total = int(await conn.fetchval(count_sql, *args))
    items = [{key: value for key, value in row.items() if key != "total"} for row in rows]
    return items, total
