"""The caller's tenant. Every statement filters on `id = $1`, $1 being the tenant_id
(the SQL says so too, for the tenant-filter lint)."""

# $1 tenant_id
GET_TENANT = """
SELECT id, name,
       priority_weight_alpha::float8 AS priority_weight_alpha,
       priority_weight_beta::float8 AS priority_weight_beta,
       created_at, updated_at
FROM tenants
WHERE id = $1  -- $1 = tenant_id
"""

# The columns are numeric(5,4): PostgreSQL rounds to 4 decimal places and RETURNING gives the
# stored values, which is what the response shows (docs/decisions.md#tenant-weights).
# $1 tenant_id, $2 alpha, $3 beta, $4 updated_by (the caller)
UPDATE_WEIGHTS = """
UPDATE tenants
SET priority_weight_alpha = $2,
    priority_weight_beta = $3,
    updated_at = now(),
    updated_by = $4
WHERE id = $1  -- $1 = tenant_id
RETURNING id, name,
          priority_weight_alpha::float8 AS priority_weight_alpha,
          priority_weight_beta::float8 AS priority_weight_beta,
          created_at, updated_at
"""

# After a weights change, in the same transaction: recompute the priority keys of the
# tenant's open conversations (assigning message_count to itself fires the key trigger of
# migration 0003, which reads the new weights). Resolved ones get fresh keys when reopened.
# While this runs, concurrent allocations skip the locked rows of this tenant.
# $1 tenant_id
RECOMPUTE_PRIORITY_KEYS = """
UPDATE conversation_refs c
SET message_count = c.message_count
WHERE c.tenant_id = $1 AND c.state <> 'RESOLVED'
"""
