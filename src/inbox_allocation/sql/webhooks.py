"""Webhooks and their delivery log. Every statement reads one tenant.

A webhook's position is the last event it has handled (delivered, given up on after the last
attempt, or not of its types); the delivery worker sends the next deliverable event after it
(an xid below the snapshot's xmin, as for every reader: sql/events.py).
"""

from inbox_allocation.sql.events import CURRENT_WATERMARK, EVENT_COLUMNS

__all__ = ["CURRENT_WATERMARK"]  # services.webhooks reads the tenant's watermark through here

WEBHOOK_COLUMNS = """
    w.id, w.url, w.event_types, w.description, w.enabled, w.disabled_reason, w.created_at,
    w.failing_since
"""

# A new webhook starts at the current end of the stream: the tenant's watermark $6, read by
# CURRENT_WATERMARK just before (on Citus it must be read on the tenant's node, which a
# function call inside this INSERT would not be). $1 tenant_id, $2 url, $3 types,
# $4 description, $5 secret, $6 watermark
CREATE = f"""
INSERT INTO webhooks AS w
    (tenant_id, url, event_types, description, secret, position_xid, position_seq)
VALUES ($1, $2, $3, $4, $5, $6, 0)
RETURNING {WEBHOOK_COLUMNS}
"""

# $1 tenant_id
LIST = (
    f"SELECT {WEBHOOK_COLUMNS} FROM webhooks w WHERE w.tenant_id = $1 ORDER BY w.created_at, w.id"
)

# $1 tenant_id, $2 id
GET = f"SELECT {WEBHOOK_COLUMNS} FROM webhooks w WHERE w.tenant_id = $1 AND w.id = $2"

# $1 tenant_id, $2 id
DELETE = "DELETE FROM webhooks WHERE tenant_id = $1 AND id = $2"

# The latest attempts, newest first. $1 tenant_id, $2 webhook id, $3 limit
DELIVERIES = """
SELECT d.event_id, d.attempt, d.status_code, d.error, d.duration_ms, d.next_attempt_at,
       d.created_at
FROM webhook_deliveries d
WHERE d.tenant_id = $1 AND d.webhook_id = $2
ORDER BY d.id DESC
LIMIT $3
"""

# ---- Delivery worker ----------------------------------------------------------------

# Claims the tenant's due webhooks for one round: locked with SKIP LOCKED (another replica
# claiming at the same moment takes others) and leased until $3 (no other replica takes them
# meanwhile, with no transaction held open during the HTTP call; a replica that dies
# mid-round loses the lease, and the event is sent again: at least once). One tenant per
# statement, as every worker: row locks across tenants would span nodes on Citus.
# $1 tenant_id, $2 how many, $3 lease end
CLAIM = """
UPDATE webhooks w SET next_attempt_at = $3
FROM (
    SELECT d.tenant_id, d.id FROM webhooks d
    WHERE d.tenant_id = $1 AND d.enabled AND d.next_attempt_at <= now()
    ORDER BY d.next_attempt_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
) due
WHERE w.tenant_id = $1 AND w.id = due.id
RETURNING w.tenant_id, w.id, w.url, w.secret, w.event_types, w.position_xid,
          w.position_seq, w.attempt, w.failing_since, w.next_attempt_at AS lease
"""

# The next deliverable event of the webhook's types after its position, below the watermark
# $5 (read just before, as for sql.events.PAGE), with the watermark (a NULL event when none).
# $1 tenant_id, $2 xid, $3 seq, $4 types (NULL = all), $5 watermark
NEXT_EVENT = f"""
WITH mark AS (SELECT $5::bigint AS watermark)
SELECT mark.watermark, next.*
FROM mark
LEFT JOIN LATERAL (
    SELECT {EVENT_COLUMNS}
    FROM events e
    WHERE e.tenant_id = $1 AND (e.xid, e.seq) > ($2::bigint, $3::bigint)
      AND e.xid < mark.watermark AND ($4::text[] IS NULL OR e.type = ANY($4::text[]))
    ORDER BY e.xid, e.seq
    LIMIT 1
) next ON true
"""

# Ends the round for one webhook, if the lease is still ours: the new position, attempt
# count, failure start and next attempt; `enabled` false with a reason to disable it.
# $1 tenant_id, $2 id, $3 lease, $4 position xid, $5 position seq, $6 attempt,
# $7 failing_since, $8 next attempt, $9 disabled reason (NULL = stays enabled)
SETTLE = """
UPDATE webhooks
SET position_xid = $4, position_seq = $5, attempt = $6, failing_since = $7,
    next_attempt_at = $8, enabled = $9::text IS NULL, disabled_reason = $9
WHERE tenant_id = $1 AND id = $2 AND next_attempt_at = $3
"""

# $1 tenant_id, $2 webhook id, $3 event id, $4 attempt, $5 status, $6 error, $7 ms, $8 next
LOG_DELIVERY = """
INSERT INTO webhook_deliveries
    (tenant_id, webhook_id, event_id, attempt, status_code, error, duration_ms, next_attempt_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
"""

# Retention of the log (with the events). $1 tenant_id, $2 cutoff
PURGE_DELIVERIES = "DELETE FROM webhook_deliveries WHERE tenant_id = $1 AND created_at < $2"
