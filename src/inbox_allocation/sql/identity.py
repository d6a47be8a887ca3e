"""Who is calling: the operator must exist in the X-Tenant-ID tenant
(docs/decisions.md#identity-headers)."""

# $1 tenant_id, $2 operator_id
OPERATOR_ROLE = """
SELECT role::text
FROM operators
WHERE id = $2 AND tenant_id = $1
"""
