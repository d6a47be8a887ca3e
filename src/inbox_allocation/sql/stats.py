"""Queue statistics: per inbox of one tenant (GET /api/v1/stats), and per tenant for the
Prometheus scrape. Each is one aggregate statement, never a query per inbox or tenant."""

# Every inbox of the tenant, including those with nothing queued (zeros, and a null wait).
# The conversation aggregate reads only QUEUED and ALLOCATED rows of the tenant (index
# idx_conversations_tenant_state); "available" = subscribed to the inbox and AVAILABLE.
# The wait is now − min(last_message_at) of the QUEUED conversations, in seconds rounded to
# the millisecond, never negative (message_at may lie up to 5 minutes in the future).
# $1 tenant_id
INBOX_STATS = """
WITH conversation_counts AS (
    SELECT c.inbox_id,
           count(*) FILTER (WHERE c.state = 'QUEUED') AS queued,
           count(*) FILTER (WHERE c.state = 'ALLOCATED') AS allocated,
           min(c.last_message_at) FILTER (WHERE c.state = 'QUEUED') AS oldest_queued_at
    FROM conversation_refs c
    WHERE c.tenant_id = $1 AND c.state IN ('QUEUED', 'ALLOCATED')
    GROUP BY c.inbox_id
),
available AS (
    SELECT s.inbox_id, count(*) AS available_operators
    FROM operator_inbox_subscriptions s
    JOIN operators o ON o.id = s.operator_id
    JOIN operator_status st ON st.operator_id = o.id
    WHERE s.tenant_id = $1 AND o.tenant_id = $1 AND st.tenant_id = $1
      AND st.status = 'AVAILABLE'
    GROUP BY s.inbox_id
)
SELECT i.id AS inbox_id,
       COALESCE(cc.queued, 0)::int AS queued,
       COALESCE(cc.allocated, 0)::int AS allocated,
       CASE WHEN cc.oldest_queued_at IS NOT NULL THEN
           round(extract(epoch FROM greatest(now() - cc.oldest_queued_at, interval '0'))::numeric,
                 3)::float8
       END AS oldest_queued_wait_seconds,
       COALESCE(a.available_operators, 0)::int AS available_operators
FROM inboxes i
LEFT JOIN conversation_counts cc ON cc.inbox_id = i.id
LEFT JOIN available a ON a.inbox_id = i.id
WHERE i.tenant_id = $1
ORDER BY i.created_at, i.id
"""

# Prometheus scrape: queued conversations and the oldest wait of every tenant, in one
# aggregate over the QUEUED rows (partial indexes) joined to the tenants (a tenant with
# nothing queued reports 0 and 0). Runs at most once per cache period per process, whatever
# the scrape rate (observability.metrics). Not a single-tenant statement, by design: on a
# distributed database the aggregate runs on every node (grouped by the distribution
# column) and the coordinator joins it to the tenants.
QUEUE_BY_TENANT = """
SELECT t.id::text AS tenant_id,
       COALESCE(q.queued, 0)::bigint AS queued,
       COALESCE(extract(epoch FROM greatest(now() - q.oldest_queued_at, interval '0')),
                0)::float8 AS oldest_wait_seconds
FROM tenants t
LEFT JOIN (
    SELECT c.tenant_id, count(*) AS queued, min(c.last_message_at) AS oldest_queued_at
    FROM conversation_refs c
    WHERE c.state = 'QUEUED'
    GROUP BY c.tenant_id
) AS q ON q.tenant_id = t.id
ORDER BY t.id
"""
