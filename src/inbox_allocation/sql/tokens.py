"""API tokens (migration 0007). Every statement filters on the tenant (`tenant_id = $1`),
except FIND_BY_HASH: a request presents only the token, and its hash is what finds the
tenant (api_token_lookup is keyed by the hash for exactly that; docs/authentication.md).
"""

# The columns of a token in a listing (never the hash), from alias `t`.
TOKEN_COLUMNS = "t.id, t.name, t.created_at, t.expires_at, t.last_used_at, t.revoked_at"

# Authentication of a token the process has not cached: one primary-key read of
# api_token_lookup. A row exists only while the token is unrevoked and its operator exists.
# $1 token_hash
FIND_BY_HASH = """
SELECT l.tenant_id, l.operator_id, l.token_id, l.expires_at
FROM api_token_lookup l
WHERE l.token_hash = $1
"""

# The re-check of a process's cached tokens (services.tokens.CACHE_SECONDS): the ones still
# usable, with their expiry; a missing hash was revoked or its operator deleted.
# $1 token hashes
STILL_VALID = """
SELECT l.token_hash, l.expires_at
FROM api_token_lookup l
WHERE l.token_hash = ANY($1::bytea[])
"""

# Is the operator in the tenant? (404 for the token routes; exit 1 for the CLI.)
# $1 tenant_id, $2 operator_id
OPERATOR_EXISTS = """
SELECT EXISTS (SELECT 1 FROM operators WHERE tenant_id = $1 AND id = $2)
"""

# The record; nothing is inserted when the operator is not (or no longer) in the tenant.
# $1 tenant_id, $2 token id (new), $3 operator_id, $4 name, $5 token_hash, $6 created_at,
# $7 expires_at (NULL = never)
INSERT_TOKEN = """
INSERT INTO api_tokens AS t
    (tenant_id, id, operator_id, name, token_hash, created_at, expires_at)
SELECT o.tenant_id, $2, o.id, $4, $5, $6, $7
FROM operators o
WHERE o.tenant_id = $1 AND o.id = $3
RETURNING t.id, t.name, t.created_at, t.expires_at
"""

# Same transaction as INSERT_TOKEN: makes the token usable.
# $1 tenant_id, $2 token id, $3 operator_id, $4 token_hash, $5 expires_at
INSERT_LOOKUP = """
INSERT INTO api_token_lookup (token_hash, tenant_id, token_id, operator_id, expires_at)
VALUES ($4, $1, $2, $3, $5)
"""

# The operator's tokens, newest first (revoked ones included, with revoked_at).
# $1 tenant_id, $2 operator_id
LIST_TOKENS = f"""
SELECT {TOKEN_COLUMNS}
FROM api_tokens t
WHERE t.tenant_id = $1 AND t.operator_id = $2
ORDER BY t.created_at DESC, t.id DESC
"""

# Revocation keeps the record (revoked_at) and, in the same transaction, deletes the lookup
# row (DELETE_LOOKUP), so from the commit on no replica can authenticate with the token.
# Revoking twice keeps the first instant. (Two statements, not one: on Citus the lookup is
# a reference table, and one statement modifying it and a distributed table is refused.)
# $1 tenant_id, $2 operator_id, $3 token id, $4 now
REVOKE_TOKEN = f"""
UPDATE api_tokens AS t
SET revoked_at = COALESCE(t.revoked_at, $4)
WHERE t.tenant_id = $1 AND t.operator_id = $2 AND t.id = $3
RETURNING {TOKEN_COLUMNS}
"""

# $1 tenant_id, $2 operator_id, $3 token id
DELETE_LOOKUP = """
DELETE FROM api_token_lookup l
WHERE l.tenant_id = $1 AND l.operator_id = $2 AND l.token_id = $3
"""

# Deleting an operator: its api_tokens rows go by the foreign key's cascade; its lookup rows
# (which the hash keys, not the operator) are deleted by this, in the same transaction.
# $1 tenant_id, $2 operator_id
DELETE_OPERATOR_LOOKUPS = """
DELETE FROM api_token_lookup
WHERE tenant_id = $1 AND operator_id = $2
"""

# last_used_at, written at most about once a minute per token: callers throttle in memory,
# and the condition keeps several replicas from each writing within the same minute.
# $1 tenant_id, $2 token id, $3 now
TOUCH_LAST_USED = """
UPDATE api_tokens
SET last_used_at = $3::timestamptz
WHERE tenant_id = $1 AND id = $2
  AND (last_used_at IS NULL OR last_used_at < $3::timestamptz - interval '1 minute')
"""
