"""Statements on conversation_refs shared by several services, and the list/get/search SQL.

Every statement takes the tenant id as $1 and filters every table it reads on it
(`c.tenant_id = $1`, `t.id = $1` for the tenant row), so that on a database distributed by
tenant (Citus) it runs on the one node that holds the tenant's rows.
"""

# The instant a statement runs, in seconds since the epoch.
NOW_EPOCH = "extract(epoch FROM now())::float8"


def live_priority(at_epoch: str) -> str:
    """SQL for the priority of conversation `c` at `at_epoch` (seconds since the epoch).

    The live priority (docs/decisions.md#live-priority) with the tenant's current weights, from the
    two keys kept on every write
    (migration 0003): LEAST(young_key + beta * t / 24h, aged_key + beta). The statement must
    join the conversation's tenant as `t`. Allocation compares candidates with this same
    expression, so listed, reported and allocated priorities always agree.
    """
    beta = "t.priority_weight_beta::float8"
    young = f"c.priority_young_key + {beta} * ({at_epoch}) / 86400"
    return f"LEAST({young}, c.priority_aged_key + {beta})"


def reported_priority(at_epoch: str) -> str:
    """SQL for the priority a response reports for conversation `c` at `at_epoch`: the
    priority formula (docs/decisions.md#priority-and-allocation) from the row's count and last
    message time with the tenant's current weights (joined as `t`), rounded to 6 places like
    the stored score.

    It equals live_priority() up to floating-point noise (the keys cancel a large term), but
    unlike the keys it never depends on the weights a row's keys were computed with: rows
    not recomputed yet after a weights change (and RESOLVED rows) report the right value.
    """
    alpha, beta = "t.priority_weight_alpha::float8", "t.priority_weight_beta::float8"
    count = "LEAST(log((c.message_count + 1)::float8) / 3, 1)"
    waited = f"LEAST((({at_epoch}) - extract(epoch FROM c.last_message_at)::float8) / 86400, 1)"
    return f"round(({alpha} * {count} + {beta} * {waited})::numeric, 6)::float8"


def conversation_columns(priority: str) -> str:
    """The columns every conversation response carries, from alias `c`."""
    return f"""
    c.id, c.tenant_id, c.inbox_id, c.external_conversation_id, c.customer_phone_number,
    c.state::text AS state, c.assigned_operator_id, c.last_message_at, c.message_count,
    {priority} AS priority_score, c.created_at, c.updated_at, c.resolved_at
"""


# With the priority at the statement's instant (needs `t`, the conversation's tenant).
# Never in a RETURNING clause: a distributed database (Citus) refuses non-immutable
# expressions there (now(), enum-to-text casts). A modifying statement returns `c.*` from a
# CTE and selects these columns from it (see lifecycle.RESOLVE).
CONVERSATION_COLUMNS = conversation_columns(reported_priority(NOW_EPOCH))

# The attached labels as a JSON array `[{id, name, color?}]` ordered by name
# (docs/decisions.md#labels-in-responses), built by
# PostgreSQL so a page of conversations costs one round trip, not one per row.
LABELS_JSON = """
    COALESCE((
        SELECT json_agg(json_strip_nulls(json_build_object(
                   'id', l.id, 'name', l.name, 'color', l.color)) ORDER BY l.name, l.id)
        FROM conversation_labels cl
        JOIN labels l ON l.tenant_id = $1 AND l.id = cl.label_id
        WHERE cl.tenant_id = $1 AND cl.conversation_id = c.id
    ), '[]') AS labels
"""

# The end of a statement that changed conversations in a CTE `changed` (sql/events.py): the
# rows with their labels, so every conversation response has them in the same round trip.
# The labels are read in the statement's snapshot; none of the statements ending so changes
# them.
CHANGED_WITH_LABELS = f"""
SELECT c.*, {LABELS_JSON}
FROM changed c
"""

# Visibility of a caller with role OPERATOR: only conversations in the inboxes it is
# subscribed to (no subscriptions → no rows). A fragment AND-ed into the WHERE of the list and
# the search; `{n}` is the number of its one parameter, the caller's operator id.
VISIBLE_TO_OPERATOR = """
  AND c.inbox_id IN (
      SELECT s.inbox_id
      FROM operator_inbox_subscriptions s
      JOIN operators o ON o.id = s.operator_id
      WHERE s.tenant_id = $1 AND o.tenant_id = $1 AND s.operator_id = ${n}::uuid)
"""

# ---- GET /conversations: keyset-paginated list ------------------------------------------
#
# One statement per sort order; the rows strictly after the cursor, in the sort's order.
# Parameters common to the three:
#   $1 tenant_id, $2 row limit (per_page + 1: the extra row tells whether more exist),
#   $3 cursor last_message_at, $4 cursor id (both NULL on the first page);
#   LIST_BY_PRIORITY also has $5 cursor score (NULL on the first page).
# `/*filters*/` is replaced by zero or more of the LIST_WHERE_* / VISIBLE_TO_OPERATOR
# fragments, whose parameters are numbered after the statement's own.

LIST_NEWEST = f"""
SELECT {CONVERSATION_COLUMNS}, {LABELS_JSON}
FROM conversation_refs c
JOIN tenants t ON t.id = $1
WHERE c.tenant_id = $1
  AND ($3::timestamptz IS NULL OR (c.last_message_at, c.id) < ($3, $4::uuid))
  /*filters*/
ORDER BY c.last_message_at DESC, c.id DESC
LIMIT $2
"""

LIST_OLDEST = f"""
SELECT {CONVERSATION_COLUMNS}, {LABELS_JSON}
FROM conversation_refs c
JOIN tenants t ON t.id = $1
WHERE c.tenant_id = $1
  AND ($3::timestamptz IS NULL OR (c.last_message_at, c.id) > ($3, $4::uuid))
  /*filters*/
ORDER BY c.last_message_at ASC, c.id ASC
LIMIT $2
"""


# The allocation order (priority DESC, longest waiting first, then id), so
# `sort=priority` lists the queue (QUEUED conversations) in the order /allocate hands it
# out. The priority is evaluated at one instant for all pages ($6, carried by the cursor), so
# a client paging through a queue whose priorities keep moving sees neither gaps nor repeats.
# Also: $5 cursor priority (NULL on the first page), $6 evaluation instant (epoch seconds).
#
# Served from allocation's per-inbox indexes, never by sorting the tenant: for every listed
# inbox and priority class (young / aged, as ALLOCATE_NEXT), the first $2 rows after the
# cursor in the class's key order — within a class that is the priority order — and the
# best $2 of those. A class scan starts at the cursor's key (the key bound, with a little
# slack for rounding) and checks the exact position as a filter. `/*filters*/` narrows the
# listed inboxes (PRIORITY_WHERE_INBOX, PRIORITY_VISIBLE_TO_OPERATOR).
#
# A floor keeps the scans short: first the best PROBE_ROWS of every inbox and class (`probe`);
# if those are $2 or more, the $2-th best of them (`page_floor`; NULL, no floor, when fewer were
# probed) is at or below the page's lowest score, since the page is the best $2 of a superset.
# So every class scan then stops at the floor's key (a range condition of its index scan, hence
# `coalesce(…, -Infinity)` rather than an OR), reading about a page's worth of rows in all
# instead of $2 rows per inbox and class (2,040 rows for 20 inboxes at 50 a page).
PROBE_ROWS = 3


def _queued_after_cursor(
    condition: str,
    key: str,
    score: str,
    key_bound: str,
    *,
    cursor: bool,
    limit: str = "$2",
    floor_key: str | None = None,
) -> str:
    position = (
        f"""
          AND c.{key} <= {key_bound} + 1e-9
          AND ({score} < $5 OR ({score} = $5
               AND (c.last_message_at, c.id) > ($3::timestamptz, $4::uuid)))"""
        if cursor
        else ""
    )
    floor = (
        f"""
          AND c.{key} >= coalesce({floor_key} - 1e-9, '-Infinity'::float8)"""
        if floor_key is not None
        else ""
    )
    return f"""
    SELECT pick.*
    FROM listed{" CROSS JOIN page_floor" if floor_key is not None else ""}
    CROSS JOIN LATERAL (
        SELECT c.id, {score} AS score, c.last_message_at
        FROM conversation_refs c
        WHERE c.tenant_id = $1 AND c.inbox_id = listed.inbox_id AND c.state = 'QUEUED'
          AND {condition}{position}{floor}
        ORDER BY c.{key} DESC, c.last_message_at ASC, c.id ASC
        LIMIT {limit}
    ) AS pick"""


# The priority of a row of each class at $6 (what live_priority() gives for it), from the
# class's own key: the class scans read nothing but their index.
_YOUNG_SCORE = "c.priority_young_key + listed.beta * $6::float8 / 86400"
_AGED_SCORE = "c.priority_aged_key + listed.beta"
_YOUNG = "c.last_message_at > to_timestamp($6::float8 - 86400)"
_YOUNG_BOUND = "$5 - listed.beta * $6::float8 / 86400"


def _class_scans(*, cursor: bool, limit: str, floored: bool) -> str:
    """The three class scans (young, young but flagged aged, aged), UNION ALL."""
    young_floor = "page_floor.score - listed.beta * $6::float8 / 86400" if floored else None
    aged_floor = "page_floor.score - listed.beta" if floored else None
    young = _queued_after_cursor(
        f"NOT c.aged AND {_YOUNG}", "priority_young_key", _YOUNG_SCORE, _YOUNG_BOUND,
        cursor=cursor, limit=limit, floor_key=young_floor,
    )  # fmt: skip
    flagged = _queued_after_cursor(
        f"c.aged AND {_YOUNG}", "priority_young_key", _YOUNG_SCORE, _YOUNG_BOUND,
        cursor=cursor, limit=limit, floor_key=young_floor,
    )  # fmt: skip
    aged = _queued_after_cursor(
        "c.last_message_at <= to_timestamp($6::float8 - 86400)", "priority_aged_key",
        _AGED_SCORE, "$5 - listed.beta", cursor=cursor, limit=limit, floor_key=aged_floor,
    )  # fmt: skip
    return f"""{young}
    UNION ALL{flagged}
    WHERE to_timestamp($6::float8) < statement_timestamp() - interval '5 minutes'
    UNION ALL{aged}
    WHERE listed.has_aged"""


def _list_by_priority(*, cursor: bool) -> str:
    # The first page has no position to check; `$3`–`$5` (NULL) are only named.
    first_page = (
        ""
        if cursor
        else ("AND $3::timestamptz IS NULL AND $4::uuid IS NULL AND $5::float8 IS NULL")
    )
    return f"""
WITH listed AS (
    SELECT i.id AS inbox_id, t.priority_weight_beta::float8 AS beta,
           (SELECT min(q.last_message_at) FROM conversation_refs q
            WHERE q.tenant_id = $1 AND q.inbox_id = i.id AND q.state = 'QUEUED'
              AND NOT q.aged) <= to_timestamp($6::float8 - 86400)
           OR (SELECT min(q.last_message_at) FROM conversation_refs q
               WHERE q.tenant_id = $1 AND q.inbox_id = i.id AND q.state = 'QUEUED'
                 AND q.aged) <= to_timestamp($6::float8 - 86400) AS has_aged
    FROM inboxes i
    JOIN tenants t ON t.id = $1
    WHERE i.tenant_id = $1 {first_page}
      /*filters*/
),
probe AS ({_class_scans(cursor=cursor, limit=str(PROBE_ROWS), floored=False)}
),
page_floor AS (
    SELECT (SELECT p.score FROM probe p ORDER BY p.score DESC OFFSET $2 - 1 LIMIT 1) AS score
),
candidates AS ({_class_scans(cursor=cursor, limit="$2", floored=True)}
),
best AS (
    SELECT * FROM candidates
    ORDER BY score DESC, last_message_at ASC, id ASC
    LIMIT $2
)
SELECT {conversation_columns(reported_priority("$6::float8"))}, {LABELS_JSON},
       best.score AS sort_score
FROM best
JOIN conversation_refs c ON c.tenant_id = $1 AND c.id = best.id
JOIN tenants t ON t.id = $1
ORDER BY best.score DESC, best.last_message_at ASC, best.id ASC
"""


LIST_BY_PRIORITY = _list_by_priority(cursor=False)  # the first page ($3, $4, $5 NULL)
LIST_BY_PRIORITY_AFTER = _list_by_priority(cursor=True)  # the pages after a cursor

# sort=priority with a label: driven by the label's attachments (a label is on few
# conversations; scanning the inboxes' queues for it could read all of them).
LIST_BY_PRIORITY_WITH_LABEL = f"""
SELECT {conversation_columns("p.score")}, {LABELS_JSON}, p.score AS sort_score
FROM labels l
JOIN conversation_labels cl ON cl.tenant_id = $1 AND cl.label_id = l.id
JOIN conversation_refs c ON c.tenant_id = $1 AND c.id = cl.conversation_id
JOIN tenants t ON t.id = $1
CROSS JOIN LATERAL (SELECT {live_priority("$6::float8")} AS score) p
WHERE l.tenant_id = $1 AND l.id = $7::uuid AND c.state = 'QUEUED'
  AND ($5::float8 IS NULL
       OR p.score < $5
       OR (p.score = $5 AND (c.last_message_at, c.id) > ($3::timestamptz, $4::uuid)))
  /*filters*/
ORDER BY p.score DESC, c.last_message_at ASC, c.id ASC
LIMIT $2
"""

# Inbox filters of LIST_BY_PRIORITY (on its listed inboxes `i`).
PRIORITY_WHERE_INBOX = """
  AND i.id = ${n}::uuid
"""

PRIORITY_VISIBLE_TO_OPERATOR = """
  AND i.id IN (
      SELECT s.inbox_id
      FROM operator_inbox_subscriptions s
      JOIN operators o ON o.id = s.operator_id
      WHERE s.tenant_id = $1 AND o.tenant_id = $1 AND s.operator_id = ${n}::uuid)
"""

# Filters of the list, AND-ed into the WHERE; `{n}` is the number of the fragment's one
# parameter. Each is anchored on the tenant like every statement here: `(c.tenant_id, col) =
# ($1, $n)` is `c.tenant_id = $1 AND col = $n` (and matches the (tenant_id, …) indexes).
LIST_WHERE_STATE = """
  AND (c.tenant_id, c.state) = ($1, ${n}::conversation_state)
"""

LIST_WHERE_INBOX = """
  AND (c.tenant_id, c.inbox_id) = ($1, ${n}::uuid)
"""

LIST_WHERE_ASSIGNED_TO = """
  AND (c.tenant_id, c.assigned_operator_id) = ($1, ${n}::uuid)
"""

# The conversation carries the label (a label of the tenant: another tenant's id matches
# nothing). (The Go service's filter never returned a row.)
LIST_WHERE_HAS_LABEL = """
  AND EXISTS (
      SELECT 1
      FROM conversation_labels cl
      JOIN labels l ON l.id = cl.label_id
      WHERE cl.tenant_id = $1 AND cl.conversation_id = c.id
        AND l.tenant_id = $1 AND l.id = ${n}::uuid)
"""

# ---- GET /conversations/{id} -------------------------------------------------------------

# The conversation with its labels, and whether the caller is subscribed to its inbox (the
# access rule for role OPERATOR).
# $1 tenant_id, $2 conversation id, $3 caller's operator id
GET_CONVERSATION = f"""
SELECT {CONVERSATION_COLUMNS}, {LABELS_JSON},
       EXISTS (
           SELECT 1
           FROM operator_inbox_subscriptions s
           JOIN operators o ON o.id = s.operator_id
           WHERE s.tenant_id = $1 AND o.tenant_id = $1 AND s.operator_id = $3
             AND s.inbox_id = c.inbox_id
       ) AS caller_subscribed
FROM conversation_refs c
JOIN tenants t ON t.id = $1
WHERE c.tenant_id = $1 AND c.id = $2
"""

# ---- GET /search -------------------------------------------------------------------------

# Exact match on the customer's number in either written form (uses idx_conversations_phone).
# `/*filters*/` is VISIBLE_TO_OPERATOR (its parameter $5) for role OPERATOR, else empty.
# $1 tenant_id, $2 number as "+digits", $3 the same without "+", $4 row limit
SEARCH_BY_PHONE = f"""
SELECT {CONVERSATION_COLUMNS}, {LABELS_JSON}
FROM conversation_refs c
JOIN tenants t ON t.id = $1
WHERE c.tenant_id = $1 AND c.customer_phone_number IN ($2, $3)
  /*filters*/
ORDER BY c.created_at DESC, c.id DESC
LIMIT $4
"""
