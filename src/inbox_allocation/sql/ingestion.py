"""Conversation ingestion: one atomic upsert per inbound customer message."""

from inbox_allocation.sql.conversations import CONVERSATION_COLUMNS, LABELS_JSON

# Keyed by (tenant, external_conversation_id) via idx_conversations_external_id, so any
# number of concurrent events for one conversation yield exactly one row whose count is the
# number of events:
# - new → QUEUED with message_count 1 (`created` true);
# - existing → count + 1, last_message_at = the later of the two; RESOLVED reopens to QUEUED
#   (operator and resolved_at cleared); ALLOCATED stays with its operator; the inbox and
#   the customer's number are not changed.
# Nothing happens when the inbox is not the tenant's (no row returned). The priority keys
# follow from the trigger of migration 0003. updated_at = EXCLUDED.updated_at is now() (the
# column's default in the proposed row): a distributed database (Citus) refuses now() itself
# in ON CONFLICT DO UPDATE, and an INSERT inside a CTE, hence the second statement below.
# $1 tenant_id, $2 inbox_id, $3 external_conversation_id, $4 customer phone,
# $5 message time, $6 id for a new conversation
UPSERT_MESSAGE = """
INSERT INTO conversation_refs AS c (id, tenant_id, inbox_id, external_conversation_id,
                                    customer_phone_number, state, message_count,
                                    last_message_at)
SELECT $6, i.tenant_id, i.id, $3, $4, 'QUEUED', 1, $5
FROM inboxes i
WHERE i.tenant_id = $1 AND i.id = $2
ON CONFLICT (tenant_id, external_conversation_id) DO UPDATE
SET message_count = c.message_count + 1,
    last_message_at = GREATEST(c.last_message_at, EXCLUDED.last_message_at),
    state = CASE WHEN c.state = 'RESOLVED' THEN 'QUEUED' ELSE c.state END,
    assigned_operator_id = CASE WHEN c.state = 'RESOLVED' THEN NULL
                                ELSE c.assigned_operator_id END,
    resolved_at = CASE WHEN c.state = 'RESOLVED' THEN NULL ELSE c.resolved_at END,
    updated_at = EXCLUDED.updated_at
RETURNING c.id, (c.xmax = 0) AS created
"""

# The upserted conversation, read in the same transaction (its row is still locked by it).
# $1 tenant_id, $2 conversation id
UPSERTED_CONVERSATION = f"""
SELECT {CONVERSATION_COLUMNS}, {LABELS_JSON}
FROM conversation_refs c
JOIN tenants t ON t.id = $1
WHERE c.tenant_id = $1 AND c.id = $2
"""
