"""Inboxes of a tenant. Every statement filters on the tenant (`tenant_id = $1`)."""

# The columns of an Inbox response (contract §4.6), from alias `i`.
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
# unique index decides, so concurrent duplicates cannot both succeed (D-07).
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

# Cascades (schema): the inbox's conversations (with their labels and grace rows), its
# labels and its subscriptions.
# $1 tenant_id, $2 inbox_id
DELETE_INBOX = """
DELETE FROM inboxes
WHERE tenant_id = $1 AND id = $2
"""
