"""The caller's tenant. Every statement filters on `id = $1`, $1 being the tenant_id
(the SQL says so too, for the tenant-filter lint).

Lock order (sql/locking.py): a weights change locks the tenant row only; the conversations'
keys are recomputed afterwards without waiting for any row (sql/priority_keys.py).
"""

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
# stored values, which is what the response shows. Only the tenant row changes: the
# new version makes the priority-keys worker recompute the conversations' keys
# (services/priority_keys.py), so no conversation is locked here.
# $1 tenant_id, $2 alpha, $3 beta, $4 updated_by (the caller)
UPDATE_WEIGHTS = """
UPDATE tenants
SET priority_weight_alpha = $2,
    priority_weight_beta = $3,
    weights_version = weights_version + 1,
    updated_at = now(),
    updated_by = $4
WHERE id = $1  -- $1 = tenant_id
RETURNING id, name,
          priority_weight_alpha::float8 AS priority_weight_alpha,
          priority_weight_beta::float8 AS priority_weight_beta,
          created_at, updated_at
"""
