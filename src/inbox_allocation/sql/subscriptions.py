"""Operator ↔ inbox subscriptions.

Every statement filters every table it reads on the tenant ($1), so that on a database
distributed by tenant (Citus) it runs on the node holding the tenant's rows.
"""

from inbox_allocation.sql.events import (
    changed_conversations,
    conversation_event,
    events_written,
)

# Existence checks that also keep the row from being deleted until the transaction ends
# (FOR KEY SHARE: the same lock the foreign key of a new subscription takes).
# $1 tenant_id, $2 inbox_id
LOCK_INBOX = """
SELECT id FROM inboxes WHERE tenant_id = $1 AND id = $2 FOR KEY SHARE
"""

# $1 tenant_id, $2 operator_id
LOCK_OPERATOR = """
SELECT id FROM operators WHERE tenant_id = $1 AND id = $2 FOR KEY SHARE
"""

# Plain existence checks for reads.
# $1 tenant_id, $2 inbox_id
INBOX_EXISTS = """
SELECT EXISTS (SELECT 1 FROM inboxes WHERE tenant_id = $1 AND id = $2)
"""

# $1 tenant_id, $2 operator_id
OPERATOR_EXISTS = """
SELECT EXISTS (SELECT 1 FROM operators WHERE tenant_id = $1 AND id = $2)
"""

# One page of an inbox's subscriptions (oldest first, then operator id), each row carrying
# the number of all of them (`total`).
# $1 tenant_id, $2 inbox_id, $3 limit, $4 offset
LIST_BY_INBOX = """
SELECT s.id, s.operator_id, s.inbox_id, s.created_at, count(*) OVER () AS total
FROM operator_inbox_subscriptions s
JOIN inboxes i ON i.id = s.inbox_id AND i.tenant_id = $1
JOIN operators o ON o.id = s.operator_id AND o.tenant_id = $1
WHERE s.tenant_id = $1 AND s.inbox_id = $2
ORDER BY s.created_at, s.operator_id
LIMIT $3 OFFSET $4
"""

# $1 tenant_id, $2 inbox_id
COUNT_BY_INBOX = """
SELECT count(*)
FROM operator_inbox_subscriptions s
JOIN inboxes i ON i.id = s.inbox_id AND i.tenant_id = $1
JOIN operators o ON o.id = s.operator_id AND o.tenant_id = $1
WHERE s.tenant_id = $1 AND s.inbox_id = $2
"""

# One page of an operator's subscriptions (oldest first, then inbox id), with `total`.
# $1 tenant_id, $2 operator_id, $3 limit, $4 offset
LIST_BY_OPERATOR = """
SELECT s.id, s.operator_id, s.inbox_id, s.created_at, count(*) OVER () AS total
FROM operator_inbox_subscriptions s
JOIN inboxes i ON i.id = s.inbox_id AND i.tenant_id = $1
JOIN operators o ON o.id = s.operator_id AND o.tenant_id = $1
WHERE s.tenant_id = $1 AND s.operator_id = $2
ORDER BY s.created_at, s.inbox_id
LIMIT $3 OFFSET $4
"""

# $1 tenant_id, $2 operator_id
COUNT_BY_OPERATOR = """
SELECT count(*)
FROM operator_inbox_subscriptions s
JOIN inboxes i ON i.id = s.inbox_id AND i.tenant_id = $1
JOIN operators o ON o.id = s.operator_id AND o.tenant_id = $1
WHERE s.tenant_id = $1 AND s.operator_id = $2
"""

# Subscribe; an existing pair inserts nothing (no row returned). The inbox and the operator
# have been checked (and key-share locked) as the tenant's by LOCK_INBOX / LOCK_OPERATOR;
# the tenant filter repeats that here.
# $1 tenant_id, $2 inbox_id, $3 operator_id, $4 new subscription id
INSERT_SUBSCRIPTION = """
INSERT INTO operator_inbox_subscriptions AS s (id, tenant_id, operator_id, inbox_id)
SELECT $4, i.tenant_id, o.id, i.id
FROM inboxes i
JOIN operators o ON o.tenant_id = $1 AND o.id = $3
WHERE i.tenant_id = $1 AND i.id = $2
ON CONFLICT (tenant_id, operator_id, inbox_id) DO NOTHING
RETURNING s.id, s.operator_id, s.inbox_id, s.created_at
"""

# $1 tenant_id, $2 inbox_id, $3 operator_id
GET_SUBSCRIPTION = """
SELECT s.id, s.operator_id, s.inbox_id, s.created_at
FROM operator_inbox_subscriptions s
JOIN inboxes i ON i.id = s.inbox_id AND i.tenant_id = $1
WHERE s.tenant_id = $1 AND s.inbox_id = $2 AND s.operator_id = $3
"""

# $1 tenant_id, $2 inbox_id, $3 operator_id
DELETE_SUBSCRIPTION = """
DELETE FROM operator_inbox_subscriptions s
WHERE s.tenant_id = $1 AND s.inbox_id = $2 AND s.operator_id = $3
"""

# Unsubscribing returns the operator's conversations in that inbox to the queue, locked in id
# order, each with its conversation.queued event (reason unsubscribed), and drops their grace
# rows, which no longer have anything to expire.
# $1 tenant_id, $2 inbox_id, $3 operator_id
REQUEUE_OPERATOR_IN_INBOX = f"""
WITH held AS (
    SELECT c.id
    FROM conversation_refs c
    WHERE c.tenant_id = $1 AND c.inbox_id = $2 AND c.assigned_operator_id = $3
      AND c.state = 'ALLOCATED'
    ORDER BY c.id
    FOR NO KEY UPDATE OF c
),
requeued AS (
    UPDATE conversation_refs c
    SET state = 'QUEUED', assigned_operator_id = NULL, updated_at = now()
    FROM held
    WHERE c.tenant_id = $1 AND c.id = held.id
    RETURNING c.*
),
{changed_conversations("requeued")},
{
    conversation_event(
        "event", "conversation.queued", extra="'reason', 'unsubscribed'", operator="$3::uuid"
    )
}
DELETE FROM grace_period_assignments g
USING requeued r
WHERE g.tenant_id = $1 AND g.conversation_id = r.id AND {events_written()}
"""
