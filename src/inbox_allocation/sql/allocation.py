"""Allocation (the next conversation for an operator) and claim (a chosen one).

Lock order used everywhere, so concurrent transitions never deadlock:
operator_status row → conversation row(s) → grace row.
"""

from inbox_allocation.sql.conversations import CONVERSATION_COLUMNS

# One statement, one round trip: verify the caller (member of the tenant, AVAILABLE),
# pick the best QUEUED conversation of each subscribed inbox with FOR UPDATE SKIP LOCKED
# (each a short index scan on idx_conversations_allocation), keep the best of those, and
# mark it ALLOCATED. Rows another allocator has locked are skipped, so two callers can
# never receive the same conversation (fixes D-01), and no caller waits for another.
# The caller's status row is held FOR SHARE so a concurrent status change (which takes it
# FOR UPDATE) waits for this allocation and then gives it a grace row if it goes OFFLINE.
# $1 tenant_id, $2 operator_id
ALLOCATE_NEXT = f"""
WITH caller AS (
    SELECT s.operator_id
    FROM operator_status s
    JOIN operators o ON o.id = s.operator_id
    WHERE o.tenant_id = $1 AND s.operator_id = $2 AND s.status = 'AVAILABLE'
    FOR SHARE OF s
),
best_per_inbox AS (
    SELECT pick.id, pick.priority_score, pick.last_message_at
    FROM caller
    JOIN operator_inbox_subscriptions sub ON sub.operator_id = caller.operator_id
    CROSS JOIN LATERAL (
        SELECT c.id, c.priority_score, c.last_message_at
        FROM conversation_refs c
        WHERE c.tenant_id = $1 AND c.inbox_id = sub.inbox_id AND c.state = 'QUEUED'
        ORDER BY c.priority_score DESC, c.last_message_at ASC, c.id ASC
        LIMIT 1
        FOR UPDATE OF c SKIP LOCKED
    ) AS pick
),
chosen AS (
    SELECT id FROM best_per_inbox
    ORDER BY priority_score DESC, last_message_at ASC, id ASC
    LIMIT 1
)
UPDATE conversation_refs c
SET state = 'ALLOCATED', assigned_operator_id = $2, updated_at = now()
FROM chosen
WHERE c.id = chosen.id AND c.tenant_id = $1
RETURNING {CONVERSATION_COLUMNS}
"""

# Why nothing was allocated (only run after ALLOCATE_NEXT returned no row).
# $1 tenant_id, $2 operator_id
ALLOCATION_BLOCKER = """
SELECT o.id IS NOT NULL AS operator_exists,
       s.status::text AS status,
       EXISTS (SELECT 1 FROM operator_inbox_subscriptions sub
               JOIN inboxes i ON i.id = sub.inbox_id AND i.tenant_id = $1
               WHERE sub.operator_id = $2) AS has_subscriptions
FROM (SELECT 1) AS one
LEFT JOIN operators o ON o.id = $2 AND o.tenant_id = $1
LEFT JOIN operator_status s ON s.operator_id = o.id
"""

# The caller's availability, locked FOR SHARE for the rest of the claim transaction.
# $1 tenant_id, $2 operator_id
LOCK_CALLER_STATUS = """
SELECT s.status::text AS status
FROM operator_status s
JOIN operators o ON o.id = s.operator_id
WHERE o.tenant_id = $1 AND s.operator_id = $2
FOR SHARE OF s
"""

# The claimed conversation, locked without waiting: a lock held by a concurrent claim (or
# allocation) raises lock_not_available → 409 CONVERSATION_ALREADY_CLAIMED.
# $1 tenant_id, $2 conversation_id, $3 operator_id (for the subscription check)
LOCK_CLAIM_TARGET = f"""
SELECT {CONVERSATION_COLUMNS},
       EXISTS (SELECT 1 FROM operator_inbox_subscriptions sub
               WHERE sub.operator_id = $3 AND sub.inbox_id = c.inbox_id) AS caller_subscribed
FROM conversation_refs c
WHERE c.tenant_id = $1 AND c.id = $2
FOR UPDATE OF c NOWAIT
"""

# $1 tenant_id, $2 conversation_id, $3 operator_id
ASSIGN_TO_CALLER = f"""
UPDATE conversation_refs c
SET state = 'ALLOCATED', assigned_operator_id = $3, updated_at = now()
WHERE c.tenant_id = $1 AND c.id = $2 AND c.state = 'QUEUED'
RETURNING {CONVERSATION_COLUMNS}
"""
