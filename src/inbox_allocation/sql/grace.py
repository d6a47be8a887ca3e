"""The grace-period sweeper's statements.

The sweeper serves every tenant, one tenant at a time (a background worker, not a request):
each statement takes the tenant as $1 and filters every table on it, so that on a database
distributed by tenant (Citus) it runs on the one node holding that tenant's rows.

Lock order (sql/locking.py): operator status rows (ascending) → conversation → grace row; the
sweeper never waits on a conversation or grace row (SKIP LOCKED), so it cannot deadlock with
status changes or lifecycle transitions; rows it skips are handled on the next batch or run.
"""

from inbox_allocation.sql.conversations import CONVERSATION_COLUMNS
from inbox_allocation.sql.events import (
    changed_conversations,
    conversation_event,
    events_written,
)

# Candidate expired rows of the tenant, oldest expiry first (no lock yet), after the last
# candidate of the previous batch of this run (keyset on (expires_at, id)), so a run goes past
# rows it had to skip because another transaction held them, up to the end.
# $1 tenant_id, $2 batch size, $3 last expires_at (NULL: from the start), $4 last id
EXPIRED_CANDIDATES = """
SELECT g.id, g.conversation_id, g.operator_id, g.expires_at
FROM grace_period_assignments g
WHERE g.tenant_id = $1 AND g.expires_at <= now()
  AND ($3::timestamptz IS NULL OR (g.expires_at, g.id) > ($3::timestamptz, $4::uuid))
ORDER BY g.expires_at, g.id
LIMIT $2
"""

# The operators' current status, held FOR SHARE until commit: an operator coming back
# (status change takes the row FOR UPDATE) waits, so "still OFFLINE" stays true while we
# release. Waiting here is safe: the sweeper holds no other lock at this point.
# $1 tenant_id, $2 operator ids
LOCK_OPERATOR_STATUSES = """
SELECT s.operator_id, s.status::text AS status
FROM operator_status s
WHERE s.tenant_id = $1 AND s.operator_id = ANY($2::uuid[])
ORDER BY s.operator_id
FOR SHARE OF s
"""

# Lock the candidates' conversations and grace rows, skipping any another transaction holds.
# $1 tenant_id, $2 grace row ids
LOCK_EXPIRED = """
SELECT g.id, g.conversation_id, g.operator_id, c.state::text AS state,
       c.assigned_operator_id, c.tenant_id
FROM grace_period_assignments g
JOIN conversation_refs c ON c.tenant_id = $1 AND c.id = g.conversation_id
JOIN operators o ON o.tenant_id = $1 AND o.id = g.operator_id
WHERE g.tenant_id = $1 AND g.id = ANY($2::uuid[]) AND g.expires_at <= now()
FOR NO KEY UPDATE OF c SKIP LOCKED
FOR UPDATE OF g SKIP LOCKED
"""

# Release: back to the queue, only if still allocated to the grace row's operator; each
# released conversation's conversation.queued event (reason grace_expired) in the same
# statement.
# $1 tenant_id, $2 conversation ids, $3 operator ids (pairwise)
RELEASE = f"""
WITH released AS (
    UPDATE conversation_refs c
    SET state = 'QUEUED', assigned_operator_id = NULL, updated_at = now()
    FROM unnest($2::uuid[], $3::uuid[]) AS r(conversation_id, operator_id)
    WHERE c.tenant_id = $1 AND c.id = r.conversation_id AND c.state = 'ALLOCATED'
      AND c.assigned_operator_id = r.operator_id
    RETURNING c.*, r.operator_id AS released_from
),
{changed_conversations("released", CONVERSATION_COLUMNS + ", c.released_from")},
{
    conversation_event(
        "event",
        "conversation.queued",
        extra="'reason', 'grace_expired'",
        operator="changed.released_from",
    )
}
SELECT changed.id, changed.tenant_id FROM changed WHERE {events_written()}
"""

# $1 tenant_id, $2 grace row ids
DELETE_ROWS = """
DELETE FROM grace_period_assignments g
WHERE g.tenant_id = $1 AND g.id = ANY($2::uuid[])
"""
