"""Labels of an inbox and their attachment to conversations (contract §3.28–3.33, §6.10).

Every statement filters every table it reads on the tenant (`tenant_id = $1`), so that on a
database distributed by tenant (Citus) it runs on the node holding the tenant's rows.
"""

# The Label shape (contract §4.8), from alias `l`.
LABEL_COLUMNS = """
    l.id, l.tenant_id, l.inbox_id, l.name, l.color, l.created_by, l.created_at
"""

# The inbox of the tenant, and whether the caller is subscribed to it (GET /labels).
# $1 tenant_id, $2 inbox_id, $3 caller's operator id
INBOX_ACCESS = """
SELECT i.id,
       EXISTS (
           SELECT 1
           FROM operator_inbox_subscriptions s
           WHERE s.tenant_id = $1 AND s.inbox_id = i.id AND s.operator_id = $3
       ) AS caller_subscribed
FROM inboxes i
WHERE i.tenant_id = $1 AND i.id = $2
"""

# Creating a label: the inbox must exist and stay until the insert commits (a concurrent
# delete of the inbox waits instead of turning the insert into a foreign-key error).
# $1 tenant_id, $2 inbox_id
LOCK_INBOX = """
SELECT i.id
FROM inboxes i
WHERE i.tenant_id = $1 AND i.id = $2
FOR KEY SHARE
"""

# A name already used in the inbox (exact, after trim) → no row; concurrent creates of one
# name serialise on the unique index idx_labels_inbox_name, so exactly one wins.
# $1 tenant_id, $2 inbox_id, $3 name (trimmed), $4 color or NULL, $5 created_by (the caller)
INSERT_LABEL = f"""
INSERT INTO labels AS l (tenant_id, inbox_id, name, color, created_by)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (tenant_id, inbox_id, name) DO NOTHING
RETURNING {LABEL_COLUMNS}
"""

# $1 tenant_id, $2 inbox_id
LIST_LABELS = f"""
SELECT {LABEL_COLUMNS}
FROM labels l
WHERE l.tenant_id = $1 AND l.inbox_id = $2
ORDER BY l.name, l.id
"""

# NULL name or color = unchanged (a colour cannot be cleared). A name taken by another label
# of the inbox raises a unique violation (→ 409 LABEL_NAME_CONFLICT).
# $1 tenant_id, $2 label id, $3 new name or NULL, $4 new color or NULL
UPDATE_LABEL = f"""
UPDATE labels l
SET name = COALESCE($3::text, l.name),
    color = COALESCE($4::text, l.color)
WHERE l.tenant_id = $1 AND l.id = $2
RETURNING {LABEL_COLUMNS}
"""

# Attachments go with it (ON DELETE CASCADE).
# $1 tenant_id, $2 label id
DELETE_LABEL = """
DELETE FROM labels l
WHERE l.tenant_id = $1 AND l.id = $2
RETURNING l.id
"""

# Attach/detach, first lookup: the conversation's inbox and whether the caller is subscribed
# to it. KEY SHARE keeps the row from being deleted until the attachment commits (the foreign
# key check takes the same lock) without blocking allocations, claims or lifecycle updates.
# $1 tenant_id, $2 conversation id, $3 caller's operator id
LOCK_CONVERSATION = """
SELECT c.inbox_id,
       EXISTS (
           SELECT 1
           FROM operator_inbox_subscriptions s
           WHERE s.tenant_id = $1 AND s.inbox_id = c.inbox_id AND s.operator_id = $3
       ) AS caller_subscribed
FROM conversation_refs c
WHERE c.tenant_id = $1 AND c.id = $2
FOR KEY SHARE OF c
"""

# Attach/detach, second lookup: the label's inbox.
# $1 tenant_id, $2 label id
LOCK_LABEL = """
SELECT l.inbox_id
FROM labels l
WHERE l.tenant_id = $1 AND l.id = $2
FOR KEY SHARE
"""

# Idempotent: an existing attachment (also one a concurrent request just made) → nothing.
# The join re-checks that the label belongs to the conversation's inbox at insert time.
# $1 tenant_id, $2 conversation id, $3 label id, $4 new row id
ATTACH_LABEL = """
INSERT INTO conversation_labels (id, tenant_id, conversation_id, label_id)
SELECT $4, c.tenant_id, c.id, l.id
FROM conversation_refs c
JOIN labels l ON l.tenant_id = $1 AND l.inbox_id = c.inbox_id
WHERE c.tenant_id = $1 AND c.id = $2 AND l.id = $3
ON CONFLICT (tenant_id, conversation_id, label_id) DO NOTHING
"""

# Idempotent: no attachment → nothing.
# $1 tenant_id, $2 conversation id, $3 label id
DETACH_LABEL = """
DELETE FROM conversation_labels cl
WHERE cl.tenant_id = $1 AND cl.conversation_id = $2 AND cl.label_id = $3
"""
