"""State transitions after allocation: resolve, deallocate, reassign, move to another inbox.

Each runs in a transaction that locks, in the order of sql/locking.py, the status rows of the
conversation's holder (read first without a lock, PEEK_HOLDER) and of a reassign target,
then the conversation row (LOCK_CONVERSATION), so two concurrent transitions of one
conversation are serialised and the second sees the first's result (no lost updates from
stale snapshots). FOR NO KEY UPDATE: foreign-key checks (label attachments, grace rows) need
not wait. Statements returning conversation columns join the tenant (`t`) for the live
priority; the updates return the row from a CTE and compute those columns outside it (a
distributed database refuses now() and enum casts in RETURNING). Every table is filtered by
the tenant ($1). Each transition writes its event in the same statement (sql/events.py).
"""

from inbox_allocation.sql.conversations import (
    CHANGED_WITH_LABELS,
    CONVERSATION_COLUMNS,
    LABELS_JSON,
)
from inbox_allocation.sql.events import (
    CONVERSATION_JSON,
    changed_conversations,
    conversation_event,
    events_written,
)

# Who holds the conversation now, read without a lock (its status row comes first in the
# lock order); re-checked once the conversation is locked.
# $1 tenant_id, $2 conversation_id
PEEK_HOLDER = """
SELECT c.state::text AS state, c.assigned_operator_id
FROM conversation_refs c
WHERE c.tenant_id = $1 AND c.id = $2
"""

# $1 tenant_id, $2 conversation_id
LOCK_CONVERSATION = f"""
SELECT {CONVERSATION_COLUMNS}, {LABELS_JSON}
FROM conversation_refs c
JOIN tenants t ON t.id = $1
WHERE c.tenant_id = $1 AND c.id = $2
FOR NO KEY UPDATE OF c
"""

# $1 tenant_id, $2 conversation_id
RESOLVE = f"""
WITH updated AS (
    UPDATE conversation_refs c
    SET state = 'RESOLVED', resolved_at = now(), updated_at = now()
    WHERE c.tenant_id = $1 AND c.id = $2
    RETURNING c.*
),
{changed_conversations("updated")},
{conversation_event("event", "conversation.resolved")}
{CHANGED_WITH_LABELS}WHERE {events_written()}
"""

# $1 tenant_id, $2 conversation_id, $3 the operator it leaves (for its event)
REQUEUE = f"""
WITH updated AS (
    UPDATE conversation_refs c
    SET state = 'QUEUED', assigned_operator_id = NULL, updated_at = now()
    WHERE c.tenant_id = $1 AND c.id = $2
    RETURNING c.*
),
{changed_conversations("updated")},
{
    conversation_event(
        "event", "conversation.queued", extra="'reason', 'deallocated'", operator="$3::uuid"
    )
}
{CHANGED_WITH_LABELS}WHERE {events_written()}
"""

# $1 tenant_id, $2 conversation_id, $3 new operator_id
REASSIGN = f"""
WITH updated AS (
    UPDATE conversation_refs c
    SET assigned_operator_id = $3, updated_at = now()
    WHERE c.tenant_id = $1 AND c.id = $2
    RETURNING c.*
),
{changed_conversations("updated")},
{
    conversation_event(
        "event",
        "conversation.allocated",
        extra="'operator_id', changed.assigned_operator_id, 'via', 'reassign'",
    )
}
{CHANGED_WITH_LABELS}WHERE {events_written()}
"""

# The reassign target: member of the tenant? subscribed to the inbox? available? Its status
# row is already held FOR SHARE (LOCK_STATUS_ROWS_SHARED), so it cannot go OFFLINE, be
# unsubscribed or deleted before this transaction commits (and if it then goes OFFLINE, its
# status change gives this conversation a grace row); the subscription read is current.
# $1 tenant_id, $2 target operator_id, $3 inbox_id
TARGET_OPERATOR = """
SELECT o.id,
       (SELECT s.status::text FROM operator_status s
        WHERE s.tenant_id = $1 AND s.operator_id = o.id FOR SHARE) AS status,
       EXISTS (SELECT 1 FROM operator_inbox_subscriptions sub
               WHERE sub.tenant_id = $1 AND sub.operator_id = o.id
                 AND sub.inbox_id = $3) AS subscribed
FROM operators o
WHERE o.tenant_id = $1 AND o.id = $2
"""

# The move target inbox, and whether the current assignee (if any) is subscribed to it (the
# assignee's status row is held, so that cannot change before commit).
# $1 tenant_id, $2 target inbox_id, $3 assigned operator_id (may be NULL)
TARGET_INBOX = """
SELECT i.id,
       EXISTS (SELECT 1 FROM operator_inbox_subscriptions sub
               WHERE sub.tenant_id = $1 AND sub.inbox_id = i.id
                 AND sub.operator_id = $3) AS assignee_subscribed
FROM inboxes i
WHERE i.tenant_id = $1 AND i.id = $2
"""

# $1 tenant_id, $2 conversation_id, $3 target inbox_id, $4 deallocate (bool), $5 the inbox
# it leaves, $6 its assignee before the move (the events' operator)
MOVE_TO_INBOX = f"""
WITH updated AS (
    UPDATE conversation_refs c
    SET inbox_id = $3,
        state = CASE WHEN $4 THEN 'QUEUED'::conversation_state ELSE c.state END,
        assigned_operator_id = CASE WHEN $4 THEN NULL ELSE c.assigned_operator_id END,
        updated_at = now()
    WHERE c.tenant_id = $1 AND c.id = $2
    RETURNING c.*
),
{changed_conversations("updated")},
-- conversation.moved, then (when it left its operator) conversation.queued: one INSERT,
-- so the two take their sequence numbers in this order.
event AS (
    INSERT INTO events (tenant_id, type, inbox_id, from_inbox_id, operator_id, data)
    SELECT $1, e.type, changed.inbox_id, $5::uuid, $6::uuid, e.data
    FROM changed
    CROSS JOIN LATERAL (VALUES
        (1, 'conversation.moved', jsonb_build_object(
            'conversation', {CONVERSATION_JSON}, 'from_inbox_id', $5::uuid,
            'to_inbox_id', changed.inbox_id)),
        (2, 'conversation.queued', jsonb_build_object(
            'conversation', {CONVERSATION_JSON}, 'reason', 'moved'))
    ) AS e (n, type, data)
    WHERE e.n = 1 OR $4
    ORDER BY e.n
)
{CHANGED_WITH_LABELS}"""

# Labels belong to one inbox: a moved conversation keeps only labels of its new inbox
# (docs/decisions.md#lifecycle-transitions).
# $1 tenant_id, $2 conversation_id, $3 new inbox_id
DETACH_FOREIGN_INBOX_LABELS = """
DELETE FROM conversation_labels cl
USING labels l
WHERE l.id = cl.label_id AND l.tenant_id = $1 AND cl.tenant_id = $1
  AND cl.conversation_id = $2 AND l.inbox_id <> $3
"""

# A grace row belongs to one allocation: it goes when the allocation ends or changes hands.
# $1 tenant_id, $2 conversation_id
DELETE_GRACE_ROW = """
DELETE FROM grace_period_assignments g
WHERE g.tenant_id = $1 AND g.conversation_id = $2
"""
