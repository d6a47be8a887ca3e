"""Operator status rows and the grace rows a status change creates or removes.

Every statement filters every table it reads on the tenant ($1), so that on a database
distributed by tenant (Citus) it runs on the node holding the tenant's rows.
"""

# The status shape (contract §4.4 plus capacity), from `s` (status) and `o` (operator).
STATUS_COLUMNS = """
    s.operator_id, s.status::text AS status, s.last_status_change_at,
    o.max_concurrent_conversations,
    (SELECT count(*) FROM conversation_refs c
     WHERE c.tenant_id = $1 AND c.assigned_operator_id = s.operator_id
       AND c.state = 'ALLOCATED') AS active_conversations
"""

# $1 tenant_id, $2 operator_id
GET_STATUS = f"""
SELECT {STATUS_COLUMNS}
FROM operator_status s
JOIN operators o ON o.id = s.operator_id
WHERE s.tenant_id = $1 AND o.tenant_id = $1 AND s.operator_id = $2
"""

# Locks the row: concurrent status changes of one operator serialise here, and in-flight
# allocations (which hold it FOR SHARE) finish before the status moves.
# $1 tenant_id, $2 operator_id
LOCK_STATUS = f"""
SELECT {STATUS_COLUMNS}
FROM operator_status s
JOIN operators o ON o.id = s.operator_id
WHERE s.tenant_id = $1 AND o.tenant_id = $1 AND s.operator_id = $2
FOR UPDATE OF s
"""

# An operator without a status row (e.g. created by SQL) gets one; no row returned when the
# operator is unknown or a concurrent request created the row first.
# $1 tenant_id, $2 operator_id, $3 status, $4 new row id
INSERT_STATUS = """
INSERT INTO operator_status (id, tenant_id, operator_id, status)
SELECT $4, o.tenant_id, o.id, $3::operator_status_type
FROM operators o
WHERE o.tenant_id = $1 AND o.id = $2
ON CONFLICT (tenant_id, operator_id) DO NOTHING
RETURNING operator_id
"""

# The status columns are computed outside the UPDATE (a distributed database refuses enum
# casts and subqueries in RETURNING).
# $1 tenant_id, $2 operator_id, $3 status
UPDATE_STATUS = f"""
WITH updated AS (
    UPDATE operator_status s
    SET status = $3::operator_status_type, last_status_change_at = now()
    WHERE s.tenant_id = $1 AND s.operator_id = $2
    RETURNING s.*
)
SELECT {STATUS_COLUMNS}
FROM updated s
JOIN operators o ON o.id = s.operator_id
WHERE o.tenant_id = $1
"""

# Going OFFLINE: every conversation allocated to the operator gets a grace row; an existing
# row for that conversation is replaced (decisions.md).
# created_at = EXCLUDED.created_at is now() (the column's default in the proposed row): a
# distributed database refuses now() itself in ON CONFLICT DO UPDATE. Each new row's id is
# derived from the conversation and a fresh value of the service ($4), not drawn by
# gen_random_uuid(): a volatile function would keep a distributed database from running the
# statement on the tenant's shard alone.
# $1 tenant_id, $2 operator_id, $3 grace duration (interval), $4 fresh uuid (id salt)
START_GRACE_PERIODS = """
INSERT INTO grace_period_assignments
    (id, tenant_id, conversation_id, operator_id, expires_at, reason)
SELECT md5($4::uuid::text || c.id::text)::uuid, c.tenant_id, c.id, c.assigned_operator_id,
       now() + $3::interval, 'OFFLINE'
FROM conversation_refs c
WHERE c.tenant_id = $1 AND c.assigned_operator_id = $2 AND c.state = 'ALLOCATED'
ON CONFLICT (tenant_id, conversation_id) DO UPDATE
SET operator_id = EXCLUDED.operator_id,
    expires_at = EXCLUDED.expires_at,
    reason = EXCLUDED.reason,
    created_at = EXCLUDED.created_at
"""

# Back to AVAILABLE, or BUSY: the operator keeps its conversations, so no grace rows remain.
# $1 tenant_id, $2 operator_id
CANCEL_GRACE_PERIODS = """
DELETE FROM grace_period_assignments g
WHERE g.tenant_id = $1 AND g.operator_id = $2
"""
