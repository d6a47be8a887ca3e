"""Operators of a tenant. Every statement filters on the tenant (`tenant_id = $1`)."""

from inbox_allocation.sql.events import (
    changed_conversations,
    conversation_event,
    events_written,
)

# The columns of an Operator response, from alias `o`. The role comes as the enum itself
# (asyncpg decodes it to its label): these columns are also RETURNed, where a distributed
# database refuses the enum-to-text cast (not immutable).
OPERATOR_COLUMNS = """
    o.id, o.tenant_id, o.role, o.max_concurrent_conversations, o.created_at, o.updated_at
"""

# One page of the tenant's operators, newest first, each row carrying the number of all of
# them (`total`).
# $1 tenant_id, $2 limit, $3 offset
LIST_OPERATORS = f"""
SELECT {OPERATOR_COLUMNS}, count(*) OVER () AS total
FROM operators o
WHERE o.tenant_id = $1
ORDER BY o.created_at DESC, o.id DESC
LIMIT $2 OFFSET $3
"""

# $1 tenant_id
COUNT_OPERATORS = """
SELECT count(*) FROM operators WHERE tenant_id = $1
"""

# $1 tenant_id, $2 operator_id
GET_OPERATOR = f"""
SELECT {OPERATOR_COLUMNS}
FROM operators o
WHERE o.tenant_id = $1 AND o.id = $2
"""

# $1 tenant_id, $2 new operator id, $3 role, $4 capacity (NULL = unlimited)
INSERT_OPERATOR = f"""
INSERT INTO operators AS o (id, tenant_id, role, max_concurrent_conversations)
VALUES ($2, $1, $3::operator_role, $4)
RETURNING {OPERATOR_COLUMNS}
"""

# Every new operator starts OFFLINE (docs/decisions.md#operator-status).
# $1 tenant_id, $2 operator_id, $3 new row id
INSERT_OFFLINE_STATUS = """
INSERT INTO operator_status (id, tenant_id, operator_id, status)
SELECT $3, o.tenant_id, o.id, 'OFFLINE'
FROM operators o
WHERE o.tenant_id = $1 AND o.id = $2
"""

# Serialises every role change and deletion in the tenant, so the "last ADMIN" count below
# cannot be raced (two admins demoting each other). NO KEY UPDATE conflicts with itself but
# not with the key-share locks foreign keys take, so inserts elsewhere in the tenant go on.
# $1 tenant_id
LOCK_TENANT = """
SELECT id AS tenant_id FROM tenants WHERE id = $1 FOR NO KEY UPDATE
"""

# Read under the tenant lock: how many ADMINs the tenant has, and whether the caller is still
# one of them (a concurrent request may have demoted or deleted it meanwhile).
# $1 tenant_id, $2 caller operator_id
ADMIN_CENSUS = """
SELECT count(*) FILTER (WHERE role = 'ADMIN') AS admins,
       COALESCE(bool_or(id = $2 AND role = 'ADMIN'), false) AS caller_is_admin
FROM operators
WHERE tenant_id = $1
"""

# The target of a role change, locked for the update.
# $1 tenant_id, $2 operator_id
LOCK_OPERATOR_FOR_UPDATE = """
SELECT id, tenant_id, role::text AS role
FROM operators
WHERE tenant_id = $1 AND id = $2
FOR NO KEY UPDATE
"""

# The target of a deletion. Its status row is locked first (lock order: sql/locking.py;
# allocation, claim, reassign and status changes hold it while they give it conversations),
# then the operator row FOR UPDATE: after this no conversation can be assigned to the
# operator behind the re-queue below.
# $1 tenant_id, $2 operator_id
LOCK_STATUS_FOR_DELETE = """
SELECT s.operator_id
FROM operator_status s
JOIN operators o ON o.id = s.operator_id
WHERE s.tenant_id = $1 AND o.tenant_id = $1 AND s.operator_id = $2
FOR UPDATE OF s
"""

# $1 tenant_id, $2 operator_id
LOCK_OPERATOR_FOR_DELETE = """
SELECT id, tenant_id, role::text AS role
FROM operators
WHERE tenant_id = $1 AND id = $2
FOR UPDATE
"""

# $1 tenant_id, $2 operator_id, $3 new role (NULL = unchanged), $4 set the capacity?,
# $5 new capacity (NULL = unlimited)
UPDATE_OPERATOR = f"""
UPDATE operators AS o
SET role = COALESCE($3::operator_role, o.role),
    max_concurrent_conversations = CASE WHEN $4 THEN $5 ELSE o.max_concurrent_conversations END,
    updated_at = now()
WHERE o.tenant_id = $1 AND o.id = $2
RETURNING {OPERATOR_COLUMNS}
"""

# Before an operator is deleted (its status row locked, lock order of sql/locking.py) its
# subscriptions go, then its ALLOCATED conversations go back to the queue (the original left
# them ALLOCATED to nobody), locked in id order, each with its conversation.queued event
# (reason operator_deleted), and their grace rows are dropped.
# $1 tenant_id, $2 operator_id
DELETE_OPERATOR_SUBSCRIPTIONS = """
DELETE FROM operator_inbox_subscriptions sub
WHERE sub.tenant_id = $1 AND sub.operator_id = $2
"""

# $1 tenant_id, $2 operator_id
REQUEUE_OPERATOR_CONVERSATIONS = f"""
WITH held AS (
    SELECT c.id
    FROM conversation_refs c
    WHERE c.tenant_id = $1 AND c.assigned_operator_id = $2 AND c.state = 'ALLOCATED'
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
        "event", "conversation.queued", extra="'reason', 'operator_deleted'", operator="$2::uuid"
    )
}
DELETE FROM grace_period_assignments g
USING requeued r
WHERE g.tenant_id = $1 AND g.conversation_id = r.id AND {events_written()}
"""

# Then the operator is cleared from the conversations it still holds (resolved ones) and
# from the labels it created. The foreign keys are NO ACTION (a distributed database refuses
# ON DELETE SET NULL on keys that include tenant_id), so these run before the delete, in its
# transaction (conversations locked in id order, sql/locking.py). Neither moves updated_at:
# this is bookkeeping, not a change of the row.
# $1 tenant_id, $2 operator_id
CLEAR_CONVERSATION_ASSIGNEE = """
WITH held AS (
    SELECT c.id
    FROM conversation_refs c
    WHERE c.tenant_id = $1 AND c.assigned_operator_id = $2
    ORDER BY c.id
    FOR NO KEY UPDATE OF c
)
UPDATE conversation_refs c
SET assigned_operator_id = NULL
FROM held
WHERE c.tenant_id = $1 AND c.id = held.id
"""

# $1 tenant_id, $2 operator_id
CLEAR_LABEL_CREATOR = """
UPDATE labels l
SET created_by = NULL
WHERE l.tenant_id = $1 AND l.created_by = $2
"""

# Cascades (schema): status row, subscriptions, grace rows, idempotency keys.
# $1 tenant_id, $2 operator_id
DELETE_OPERATOR = """
DELETE FROM operators
WHERE tenant_id = $1 AND id = $2
"""
