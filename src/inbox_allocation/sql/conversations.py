"""Statements on conversation_refs shared by several services, and the list/get/search SQL.

Every statement takes the tenant id and filters on it (`c.tenant_id = $1`).
"""

# The columns every conversation response carries (contract §4.1), from alias `c`.
CONVERSATION_COLUMNS = """
    c.id, c.tenant_id, c.inbox_id, c.external_conversation_id, c.customer_phone_number,
    c.state::text AS state, c.assigned_operator_id, c.last_message_at, c.message_count,
    c.priority_score::float8 AS priority_score, c.created_at, c.updated_at, c.resolved_at
"""

# The attached labels as a JSON array `[{id, name, color?}]` ordered by name (D-31), built by
# PostgreSQL so a page of conversations costs one round trip, not one per row.
LABELS_JSON = """
    COALESCE((
        SELECT json_agg(json_strip_nulls(json_build_object(
                   'id', l.id, 'name', l.name, 'color', l.color)) ORDER BY l.name, l.id)
        FROM conversation_labels cl
        JOIN labels l ON l.id = cl.label_id AND l.tenant_id = c.tenant_id
        WHERE cl.conversation_id = c.id
    ), '[]') AS labels
"""
