"""The event outbox: reading a tenant's events in cursor order, the watermark, retention.

A position is (xid, seq): the writing transaction's id and a per-row sequence number. Only
rows whose xid is below the xmin of the reading statement's snapshot are delivered: every
transaction below xmin has ended, so the set of rows below it can no longer change and a
reader that resumes from any delivered position can never miss a row that commits later.
Within that set the order is (xid, seq). Every statement reads one tenant only.
"""

from inbox_allocation.sql.conversations import CONVERSATION_COLUMNS

# The delivery watermark of tenant $1: no transaction with an xid below it is still running
# on the node that stores the tenant's events. An xid is a node's own number, so the
# watermark must come from the node that wrote the events' xids: on Citus the worker holding
# the tenant's shards, where `event_watermark` (migration 0011) is delegated when called as
# a statement of its own outside a transaction block; on plain PostgreSQL the one server.
# The events' xid and seq are set where the row is stored, by the trigger of migration 0011.
CURRENT_WATERMARK = "SELECT event_watermark($1)"

# The columns an event is rendered from (services.events.render_event).
EVENT_COLUMNS = "e.xid, e.seq, e.type, e.occurred_at, e.tenant_id, e.data::text AS data"

# Who may see an event: $4 true = every event of the tenant (MANAGER/ADMIN); otherwise (an
# OPERATOR, $5) the events about itself and the conversation events of the inboxes it is
# subscribed to now, when the event is read.
_VISIBLE = """
  AND ($4::bool OR e.operator_id = $5::uuid
       OR (e.type LIKE 'conversation.%' AND EXISTS (
             SELECT 1
             FROM operator_inbox_subscriptions s
             WHERE s.tenant_id = $1 AND s.operator_id = $5::uuid
               AND (s.inbox_id = e.inbox_id OR s.inbox_id = e.from_inbox_id))))
"""

# One page after the cursor ($2, $3) and below the watermark $9, read by CURRENT_WATERMARK
# just before (every transaction below it had ended then, so this later snapshot sees all
# their rows). The watermark is its own statement, not part of this one, so that on Citus it
# is taken on the node that stores the tenant's events (docs/events.md). With the
# tenant's purge position (NULLs when nothing was ever purged) on every row; a page with no
# event is one row of NULL event columns.
# $1 tenant_id, $2 after xid, $3 after seq, $4 sees all, $5 operator_id, $6 types (NULL =
# all), $7 inbox_id (NULL = all), $8 limit, $9 watermark
PAGE = f"""
WITH mark AS (SELECT $9::bigint AS watermark)
SELECT mark.watermark, p.xid AS purged_xid, p.seq AS purged_seq, page.*
FROM mark
LEFT JOIN event_purges p ON p.tenant_id = $1
LEFT JOIN LATERAL (
    SELECT {EVENT_COLUMNS}
    FROM events e
    WHERE e.tenant_id = $1 AND (e.xid, e.seq) > ($2::bigint, $3::bigint)
      AND e.xid < mark.watermark
      AND ($6::text[] IS NULL OR e.type = ANY($6::text[]))
      AND ($7::uuid IS NULL OR e.inbox_id = $7::uuid OR e.from_inbox_id = $7::uuid)
      {_VISIBLE}
    ORDER BY e.xid, e.seq
    LIMIT $8
) page ON true
"""

# The hub's batch (one per process, poll and tenant with readers, not one per reader): every
# deliverable event of the tenant in [$2, $3) of xid, for the readers of this process (they
# filter in memory). One tenant per statement: the watermark it is cut at is that tenant's
# (its node's). $1 tenant_id, $2 from xid, $3 the watermark the batch was cut at.
BATCH = f"""
SELECT {EVENT_COLUMNS}, e.inbox_id, e.from_inbox_id, e.operator_id
FROM events e
WHERE e.tenant_id = $1 AND e.xid >= $2 AND e.xid < $3
ORDER BY e.xid, e.seq
"""

# The inboxes each listed operator of the tenant is subscribed to (OPERATOR readers' view).
# $1 tenant_id, $2 operator ids
SUBSCRIPTIONS = """
SELECT s.operator_id, s.inbox_id
FROM operator_inbox_subscriptions s
WHERE s.tenant_id = $1 AND s.operator_id = ANY($2::uuid[])
"""

# ---- Retention ------------------------------------------------------------------------

# The oldest events of a tenant, in position order, with whether each is past retention.
# $1 tenant_id, $2 cutoff, $3 batch size
OLDEST = """
SELECT e.xid, e.seq, e.occurred_at < $2 AS expired
FROM events e
WHERE e.tenant_id = $1
ORDER BY e.xid, e.seq
LIMIT $3
"""

# Deletes the tenant's events up to a position (all past retention, found by OLDEST).
# $1 tenant_id, $2 xid, $3 seq
DELETE_UP_TO = """
DELETE FROM events e
WHERE e.tenant_id = $1 AND (e.xid, e.seq) <= ($2::bigint, $3::bigint)
"""

# Moves the purge position forward (never back: another replica may purge concurrently).
# $1 tenant_id, $2 xid, $3 seq
RECORD_PURGE = """
INSERT INTO event_purges AS p (tenant_id, xid, seq) VALUES ($1, $2, $3)
ON CONFLICT (tenant_id) DO UPDATE SET xid = EXCLUDED.xid, seq = EXCLUDED.seq
WHERE (p.xid, p.seq) < (EXCLUDED.xid, EXCLUDED.seq)
"""

# ---- Writing events -------------------------------------------------------------------
#
# Each state-changing statement writes its events in the same statement, in CTEs over the
# changed rows: no extra round trip, and an event exists exactly when its change committed.
# `changed_conversations` turns the rows of a CTE (RETURNING c.*) into the API's conversation
# columns as CTE `changed`; `conversation_event` writes one event per row of `changed`
# (services.events renders the timestamps of `data.conversation`) through the function
# write_event (migration 0011), not an `INSERT … SELECT`: on Citus a function call is pushed
# down to the tenant's worker with the rest of the statement, whereas an `INSERT … SELECT`
# in a CTE splits the statement into one round trip per CTE. A CTE that only calls a
# function runs only when read, so the statement's last part must read it: add
# `events_written(name)` to its WHERE clause (true, once every event is written).

CONVERSATION_JSON = """jsonb_build_object(
        'id', changed.id, 'tenant_id', changed.tenant_id, 'inbox_id', changed.inbox_id,
        'external_conversation_id', changed.external_conversation_id,
        'customer_phone_number', changed.customer_phone_number, 'state', changed.state,
        'assigned_operator_id', changed.assigned_operator_id,
        'last_message_at', changed.last_message_at, 'message_count', changed.message_count,
        'priority_score', changed.priority_score, 'created_at', changed.created_at,
        'updated_at', changed.updated_at, 'resolved_at', changed.resolved_at)"""


def changed_conversations(source: str, columns: str = CONVERSATION_COLUMNS) -> str:
    """CTE `changed`: the rows of CTE `source` with `columns` (alias c, tenant t = $1)."""
    return f"""changed AS (
    SELECT {columns}
    FROM {source} c
    JOIN tenants t ON t.id = $1
)"""


def conversation_event(
    name: str,
    event_type: str,
    *,
    extra: str = "",
    operator: str = "changed.assigned_operator_id",
    from_inbox: str = "NULL",
    where: str = "",
) -> str:
    """CTE `name`: one `event_type` event per row of `changed`, written when the statement
    reads `events_written(name)`. `extra` adds `'key', value` pairs to `data`; `operator` is
    the operator the event is about and `from_inbox` the inbox a move left (both for
    visibility and filters); `where` filters the rows."""
    pairs = f", {extra}" if extra else ""
    return f"""{name} AS (
    SELECT count(write_event(
        $1, '{event_type}', changed.inbox_id, {from_inbox}, {operator},
        jsonb_build_object('conversation', {CONVERSATION_JSON}{pairs}))) AS written
    FROM changed {where}
)"""


def events_written(name: str = "event") -> str:
    """A condition that is true once the events of CTE `name` are written (reading the CTE
    is what runs it; it always has one row)."""
    return f"(SELECT {name}.written FROM {name}) IS NOT NULL"
