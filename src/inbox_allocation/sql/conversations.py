"""Statements on conversation_refs shared by several services, and the list/get/search SQL.

Every statement takes the tenant id as $1 and filters every table it reads on it
(`c.tenant_id = $1`, `t.id = $1` for the tenant row), so that on a database distributed by
tenant (Citus) it runs on the one node that holds the tenant's rows.
"""

# The instant a statement runs, in seconds since the epoch.
NOW_EPOCH = "extract(epoch FROM now())::float8"


def live_priority(at_epoch: str) -> str:
    """SQL for the priority of conversation `c` at `at_epoch` (seconds since the epoch).

    Contract §6.6 with the tenant's current weights, from the two keys kept on every write
    (migration 0003): LEAST(young_key + beta * t / 24h, aged_key + beta). The statement must
    join the conversation's tenant as `t`. Allocation compares candidates with this same
    expression, so listed, reported and allocated priorities always agree.
    """
    beta = "t.priority_weight_beta::float8"
    young = f"c.priority_young_key + {beta} * ({at_epoch}) / 86400"
    return f"LEAST({young}, c.priority_aged_key + {beta})"


def conversation_columns(priority: str) -> str:
    """The columns every conversation response carries (contract §4.1), from alias `c`."""
    return f"""
    c.id, c.tenant_id, c.inbox_id, c.external_conversation_id, c.customer_phone_number,
    c.state::text AS state, c.assigned_operator_id, c.last_message_at, c.message_count,
    {priority} AS priority_score, c.created_at, c.updated_at, c.resolved_at
"""


# With the priority at the statement's instant (needs `t`, the conversation's tenant).
# Never in a RETURNING clause: a distributed database (Citus) refuses non-immutable
# expressions there (now(), enum-to-text casts). A modifying statement returns `c.*` from a
# CTE and selects these columns from it (see lifecycle.RESOLVE).
CONVERSATION_COLUMNS = conversation_columns(live_priority(NOW_EPOCH))

# The attached labels as a JSON array `[{id, name, color?}]` ordered by name (D-31), built by
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

# The allocation order (contract §6.7: priority DESC, longest waiting first, then id), so
# `sort=priority` lists conversations in the order /allocate hands them out. The priority
# is evaluated at one instant for all pages ($6, carried by the cursor), so a client paging
# through a queue whose priorities keep moving sees neither gaps nor repeats.
# Also: $5 cursor priority (NULL on the first page), $6 evaluation instant (epoch seconds).
LIST_BY_PRIORITY = f"""
SELECT {conversation_columns("p.score")}, {LABELS_JSON}, p.score AS sort_score
FROM conversation_refs c
JOIN tenants t ON t.id = $1
CROSS JOIN LATERAL (SELECT {live_priority("$6::float8")} AS score) p
WHERE c.tenant_id = $1
  AND ($5::float8 IS NULL
       OR p.score < $5
       OR (p.score = $5 AND (c.last_message_at, c.id) > ($3::timestamptz, $4::uuid)))
  /*filters*/
ORDER BY p.score DESC, c.last_message_at ASC, c.id ASC
LIMIT $2
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
# nothing). Fixes D-32, where this filter never returned a row.
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
