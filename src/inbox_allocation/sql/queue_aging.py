"""The queue-aging sweeper's statement (migration 0005 explains the aged flag).

It serves every tenant, one tenant per statement (a background worker, not a request), so
each statement runs on one node of a database distributed by tenant. Rows another
transaction holds are skipped and flagged on a later run: the flag only speeds allocation
up, it never decides it.
"""

# Flag the QUEUED conversations whose last message is now 24 h 5 min old (the interval of the
# trigger of migration 0005; ALLOCATE_NEXT relies on flags never being set earlier), at most
# $1 per inbox; one short statement, so an allocator finds a row locked only for its
# duration. Reads idx_conversations_queue_age: (inbox, unflagged, oldest first). The ids go
# to the UPDATE as an array, so it reaches the rows through the primary key: joined to a
# CTE instead, the generic plan expects thousands of rows and hash-joins them against a
# scan of the whole table (measured: 440 ms per run at 1M queued).
# $1 tenant_id, $2 rows per inbox
FLAG_AGED = """
UPDATE conversation_refs c
SET aged = true
WHERE c.tenant_id = $1 AND c.id = ANY (ARRAY(
    SELECT crossed.id
    FROM inboxes i
    CROSS JOIN LATERAL (
        SELECT q.id
        FROM conversation_refs q
        WHERE q.tenant_id = $1 AND q.inbox_id = i.id AND q.state = 'QUEUED'
          AND NOT q.aged AND q.last_message_at <= now() - interval '24 hours 5 minutes'
        LIMIT $2
        FOR NO KEY UPDATE OF q SKIP LOCKED
    ) AS crossed
    WHERE i.tenant_id = $1
))
"""
