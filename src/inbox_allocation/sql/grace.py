"""The grace-period sweeper's statements.

The sweeper serves every tenant at once (it is a background worker, not a request), so these
statements are deliberately not tenant-scoped; each one still joins grace rows to their own
conversation and operator, never across tenants: `c.tenant_id = o.tenant_id` is required.

Lock order matches the request paths (operator_status → conversation → grace row) and the
sweeper never waits on a conversation or grace row (SKIP LOCKED), so it cannot deadlock with
status changes or lifecycle transitions; rows it skips are handled on the next batch or run.
"""

# Candidate expired rows, oldest expiry first (no lock yet), after the last one of the
# previous batch: rows skipped because another transaction held them do not end the run.
# $1 batch size, $2 expires_at and $3 id of the previous batch's last candidate (NULL: first)
EXPIRED_CANDIDATES = """
SELECT g.id, g.conversation_id, g.operator_id, g.expires_at
FROM grace_period_assignments g
WHERE g.expires_at <= now()
  AND ($2::timestamptz IS NULL OR (g.expires_at, g.id) > ($2::timestamptz, $3::uuid))
ORDER BY g.expires_at, g.id
LIMIT $1
"""

# The operators' current status, held FOR SHARE until commit: an operator coming back
# (status change takes the row FOR UPDATE) waits, so "still OFFLINE" stays true while we
# release. Waiting here is safe: the sweeper holds no other lock at this point.
# $1 operator ids
LOCK_OPERATOR_STATUSES = """
SELECT s.operator_id, s.status::text AS status
FROM operator_status s
WHERE s.operator_id = ANY($1::uuid[])
ORDER BY s.operator_id
FOR SHARE OF s
"""

# Lock the candidates' conversations and grace rows, skipping any another transaction holds.
# $1 grace row ids
LOCK_EXPIRED = """
SELECT g.id, g.conversation_id, g.operator_id, c.state::text AS state,
       c.assigned_operator_id, c.tenant_id
FROM grace_period_assignments g
JOIN conversation_refs c ON c.id = g.conversation_id
JOIN operators o ON o.id = g.operator_id AND o.tenant_id = c.tenant_id
WHERE g.id = ANY($1::uuid[]) AND g.expires_at <= now()
FOR NO KEY UPDATE OF c SKIP LOCKED
FOR UPDATE OF g SKIP LOCKED
"""

# Release: back to the queue, only if still allocated to the grace row's operator.
# $1 conversation ids, $2 operator ids (pairwise)
RELEASE = """
UPDATE conversation_refs c
SET state = 'QUEUED', assigned_operator_id = NULL, updated_at = now()
FROM unnest($1::uuid[], $2::uuid[]) AS r(conversation_id, operator_id)
WHERE c.id = r.conversation_id AND c.state = 'ALLOCATED'
  AND c.assigned_operator_id = r.operator_id
RETURNING c.id, c.tenant_id
"""

# $1 grace row ids
DELETE_ROWS = """
DELETE FROM grace_period_assignments g
WHERE g.id = ANY($1::uuid[])
"""
