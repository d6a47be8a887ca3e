"""Tenant provisioning from the command line (`inbox-allocation tenant create | list`).

Not request paths: no caller and no X-Tenant-ID. The new tenant's id is `$1` of every
creating statement (the tenant being created is the scope); the listing reads every tenant
by design (an operator's overview, exempted in tests/sql/test_sql_tenant_scope.py).
"""

# A taken name inserts nothing (no row returned → "already exists"); the unique index
# idx_tenants_name decides, so two concurrent creations cannot both succeed.
# $1 tenant_id (new), $2 name, $3 alpha, $4 beta
INSERT_TENANT = """
INSERT INTO tenants AS t (id, name, priority_weight_alpha, priority_weight_beta)
VALUES ($1, $2, $3, $4)  -- $1 = tenant_id
ON CONFLICT (name) DO NOTHING
RETURNING t.id
"""

# The tenant's first operator.
# $1 tenant_id, $2 operator_id (new)
INSERT_ADMIN = """
INSERT INTO operators (id, tenant_id, role)
VALUES ($2, $1, 'ADMIN')
"""

# Every new operator starts OFFLINE (docs/decisions.md#operator-status).
# $1 tenant_id, $2 operator_id, $3 new row id
INSERT_ADMIN_STATUS = """
INSERT INTO operator_status (id, tenant_id, operator_id, status)
SELECT $3, o.tenant_id, o.id, 'OFFLINE'
FROM operators o
WHERE o.tenant_id = $1 AND o.id = $2
"""

# Every tenant, oldest first.
LIST_TENANTS = """
SELECT id, name,
       priority_weight_alpha::float8 AS priority_weight_alpha,
       priority_weight_beta::float8 AS priority_weight_beta,
       created_at
FROM tenants
ORDER BY created_at, name
"""
