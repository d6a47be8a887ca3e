"""The queue-aging sweeper's statement (migration 0005 explains the aged flag).

It serves every tenant at once (a background worker, not a request); each conversation is
reached through its own inbox and tenant. Rows another transaction holds are skipped and
flagged on a later run: the flag only speeds allocation up, it never decides it.
"""

# Flag the QUEUED conversations whose last message is now 24 h 5 min old (the interval of the
# trigger of migration 0005; ALLOCATE_NEXT relies on flags never being set earlier), at most
# $1 per inbox; one short statement, so an allocator finds a row locked only for its
# duration. Reads idx_conversations_queue_age: (inbox, unflagged, oldest first).
# $1 rows per inbox
FLAG_AGED = """
WITH due AS (
    SELECT crossed.id, crossed.tenant_id
    FROM inboxes i
    CROSS JOIN LATERAL (
        SELECT c.id, c.tenant_id
        FROM conversation_refs c
        WHERE c.tenant_id = i.tenant_id AND c.inbox_id = i.id AND c.state = 'QUEUED'
          AND NOT c.aged AND c.last_message_at <= now() - interval '24 hours 5 minutes'
        LIMIT $1
        FOR NO KEY UPDATE OF c SKIP LOCKED
    ) AS crossed
)
UPDATE conversation_refs c
SET aged = true
FROM due
WHERE c.id = due.id AND c.tenant_id = due.tenant_id
"""
