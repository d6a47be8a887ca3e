"""Inboxes of a tenant. Every statement filters on the tenant (`tenant_id = $1`)."""

# The columns of an Inbox response, from alias `i`.
INBOX_COLUMNS = """
    i.id, i.tenant_id, i.phone_number, i.display_name, i.created_at, i.updated_at
"""

# The inboxes the caller is subscribed to, in subscription order, one page of them, each row
# carrying the number of all matching rows (`total`).
# $1 tenant_id, $2 operator_id (the caller), $3 limit, $4 offset
LIST_SUBSCRIBED = f"""
SELECT {INBOX_COLUMNS}, count(*) OVER () AS total
FROM operator_inbox_subscriptions s
JOIN inboxes i ON i.id = s.inbox_id
WHERE s.tenant_id = $1 AND i.tenant_id = $1 AND s.operator_id = $2
ORDER BY s.created_at, i.id
LIMIT $3 OFFSET $4
"""

# The same count, for a page past the end (which returns no row to carry it).
# $1 tenant_id, $2 operator_id (the caller)
COUNT_SUBSCRIBED = """
SELECT count(*)
FROM operator_inbox_subscriptions s
JOIN inboxes i ON i.id = s.inbox_id
WHERE s.tenant_id = $1 AND i.tenant_id = $1 AND s.operator_id = $2
"""

# $1 tenant_id, $2 inbox_id
GET_INBOX = f"""
SELECT {INBOX_COLUMNS}
FROM inboxes i
WHERE i.tenant_id = $1 AND i.id = $2
"""

# A phone number already used in the tenant inserts nothing (no row returned → 409); the
# unique index decides, so concurrent duplicates cannot both succeed.
# $1 tenant_id, $2 new inbox id, $3 phone_number, $4 display_name
INSERT_INBOX = """
INSERT INTO inboxes AS i (id, tenant_id, phone_number, display_name)
VALUES ($2, $1, $3, $4)
ON CONFLICT (tenant_id, phone_number) DO NOTHING
RETURNING i.id, i.tenant_id, i.phone_number, i.display_name, i.created_at, i.updated_at
"""

# Only the given fields change (NULL = unchanged); updated_at always moves. A phone number
# used by another inbox of the tenant raises a unique violation on idx_inboxes_tenant_phone.
# $1 tenant_id, $2 inbox_id, $3 phone_number or NULL, $4 display_name or NULL
UPDATE_INBOX = """
UPDATE inboxes AS i
SET phone_number = COALESCE($3, i.phone_number),
    display_name = COALESCE($4, i.display_name),
    updated_at = now()
WHERE i.tenant_id = $1 AND i.id = $2
RETURNING i.id, i.tenant_id, i.phone_number, i.display_name, i.created_at, i.updated_at
"""

# Inbox delete, in the lock order of sql/locking.py (never relying on the order in which
# PostgreSQL fires foreign-key cascades): the inbox row, the status rows of the operators
# concerned, the subscriptions, the conversations in id order (in batches, each with its
# grace rows and label attachments), the labels, the inbox.

# The inbox, locked against new subscriptions, new or moved-in conversations and labels.
# $1 tenant_id, $2 inbox_id
LOCK_INBOX_FOR_DELETE = """
SELECT id FROM inboxes WHERE tenant_id = $1 AND id = $2 FOR UPDATE
"""

# Operators that may hold a conversation of the inbox: its subscribers and, should one have
# been left without a subscription, the holders of its ALLOCATED conversations.
# $1 tenant_id, $2 inbox_id
INBOX_OPERATORS = """
SELECT sub.operator_id
FROM operator_inbox_subscriptions sub
WHERE sub.tenant_id = $1 AND sub.inbox_id = $2
UNION
SELECT c.assigned_operator_id
FROM conversation_refs c
WHERE c.tenant_id = $1 AND c.inbox_id = $2 AND c.state = 'ALLOCATED'
"""

# $1 tenant_id, $2 inbox_id
DELETE_INBOX_SUBSCRIPTIONS = """
DELETE FROM operator_inbox_subscriptions sub
WHERE sub.tenant_id = $1 AND sub.inbox_id = $2
"""

# The inbox's conversation ids in lock order (no lock: none can be added while the inbox row
# is locked).
# $1 tenant_id, $2 inbox_id
INBOX_CONVERSATION_IDS = """
SELECT c.id FROM conversation_refs c
WHERE c.tenant_id = $1 AND c.inbox_id = $2
ORDER BY c.id
"""

# One batch: the conversations locked in id order, then their grace rows and label
# attachments, then the conversations themselves.
# $1 tenant_id, $2 inbox_id, $3 conversation ids
DELETE_CONVERSATION_BATCH = """
WITH batch AS (
    SELECT c.id
    FROM conversation_refs c
    WHERE c.tenant_id = $1 AND c.inbox_id = $2 AND c.id = ANY($3::uuid[])
    ORDER BY c.id
    FOR UPDATE OF c
),
grace AS (
    DELETE FROM grace_period_assignments g
    USING batch
    WHERE g.tenant_id = $1 AND g.conversation_id = batch.id
),
attachments AS (
    DELETE FROM conversation_labels cl
    USING batch
    WHERE cl.tenant_id = $1 AND cl.conversation_id = batch.id
)
DELETE FROM conversation_refs c
USING batch
WHERE c.tenant_id = $1 AND c.id = batch.id
"""

# The inbox's labels (with any attachment left on a conversation of another inbox).
# $1 tenant_id, $2 inbox_id
DELETE_INBOX_LABELS = """
DELETE FROM labels l
WHERE l.tenant_id = $1 AND l.inbox_id = $2
"""

# $1 tenant_id, $2 inbox_id
DELETE_INBOX = """
DELETE FROM inboxes
WHERE tenant_id = $1 AND id = $2
"""
