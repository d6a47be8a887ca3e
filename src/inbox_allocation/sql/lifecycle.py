"""State transitions after allocation: resolve, deallocate, reassign, move to another inbox.

Each runs in a transaction that first locks the conversation row (LOCK_CONVERSATION), so two
concurrent transitions of one conversation are serialised and the second sees the first's
result (fixes D-03/D-06: no lost updates from stale snapshots). FOR NO KEY UPDATE: foreign-key
checks (label attachments, grace rows) need not wait. Statements returning conversation
columns join the tenant (`t`) for the live priority; the updates return the row from a CTE
and compute those columns outside it (a distributed database refuses now() and enum casts
in RETURNING). Every table is filtered by the tenant ($1).
"""

from inbox_allocation.sql.conversations import CONVERSATION_COLUMNS

# $1 tenant_id, $2 conversation_id
LOCK_CONVERSATION = f"""
SELECT {CONVERSATION_COLUMNS}
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
)
SELECT {CONVERSATION_COLUMNS}
FROM updated c
JOIN tenants t ON t.id = $1
"""

# $1 tenant_id, $2 conversation_id
REQUEUE = f"""
WITH updated AS (
    UPDATE conversation_refs c
    SET state = 'QUEUED', assigned_operator_id = NULL, updated_at = now()
    WHERE c.tenant_id = $1 AND c.id = $2
    RETURNING c.*
)
SELECT {CONVERSATION_COLUMNS}
FROM updated c
JOIN tenants t ON t.id = $1
"""

# $1 tenant_id, $2 conversation_id, $3 new operator_id
REASSIGN = f"""
WITH updated AS (
    UPDATE conversation_refs c
    SET assigned_operator_id = $3, updated_at = now()
    WHERE c.tenant_id = $1 AND c.id = $2
    RETURNING c.*
)
SELECT {CONVERSATION_COLUMNS}
FROM updated c
JOIN tenants t ON t.id = $1
"""

# The reassign target: member of the tenant? subscribed to the inbox? available? Its status
# row is held FOR SHARE so it cannot go OFFLINE before this transaction commits (and if it
# then does, its status change gives this conversation a grace row).
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

# The move target inbox, and whether the current assignee (if any) is subscribed to it.
# $1 tenant_id, $2 target inbox_id, $3 assigned operator_id (may be NULL)
TARGET_INBOX = """
SELECT i.id,
       EXISTS (SELECT 1 FROM operator_inbox_subscriptions sub
               WHERE sub.tenant_id = $1 AND sub.inbox_id = i.id
                 AND sub.operator_id = $3) AS assignee_subscribed
FROM inboxes i
WHERE i.tenant_id = $1 AND i.id = $2
"""

# $1 tenant_id, $2 conversation_id, $3 target inbox_id, $4 deallocate (bool)
MOVE_TO_INBOX = f"""
WITH updated AS (
    UPDATE conversation_refs c
    SET inbox_id = $3,
        state = CASE WHEN $4 THEN 'QUEUED'::conversation_state ELSE c.state END,
        assigned_operator_id = CASE WHEN $4 THEN NULL ELSE c.assigned_operator_id END,
        updated_at = now()
    WHERE c.tenant_id = $1 AND c.id = $2
    RETURNING c.*
)
SELECT {CONVERSATION_COLUMNS}
FROM updated c
JOIN tenants t ON t.id = $1
"""

# Labels belong to one inbox: a moved conversation keeps only labels of its new inbox
# (decisions.md, fixing D-38).
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

# Taken right after LOCK_CONVERSATION when the conversation has a holder: a status change of
# that operator (which creates or deletes its grace rows) either finished before — and this
# transaction's next statements see its grace row — or waits until this one is done and
# then sees the conversation's new state. Either way no grace row outlives its allocation.
# $1 tenant_id, $2 holder operator_id
LOCK_HOLDER_STATUS = """
SELECT s.operator_id
FROM operator_status s
JOIN operators o ON o.id = s.operator_id
WHERE s.tenant_id = $1 AND o.tenant_id = $1 AND s.operator_id = $2
FOR SHARE OF s
"""
