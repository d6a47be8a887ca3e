"""The priority-keys worker's statements (services/priority_keys.py).

The worker serves every tenant, one at a time (the tenant list is maintenance.ALL_TENANT_IDS);
each statement touches one tenant's rows only (`tenant_id = $1`, `t.id = $1`).
"""

# One batch: up to $2 conversations of tenant $1 whose keys carry an older weights version,
# recomputed by the key trigger (assigning message_count to itself fires it; it reads the
# current weights and version). Rows another transaction holds are skipped, so the worker
# never waits and an allocation never waits for it (sql/locking.py); the ids go to the
# UPDATE as an array, so it reaches the rows through the primary key. The current version is
# a scalar subquery (not a join) and the rows come in version order: so even the generic plan
# of the prepared statement reads a range of idx_conversations_weights_version (empty when
# nothing is stale: a few buffers). The join form was planned as a sequential scan of the
# tenant — every second, in every worker process, while nothing was stale (under /allocate
# load it took a quarter of a core).
# $1 tenant_id, $2 batch size
RECOMPUTE_BATCH = """
UPDATE conversation_refs c
SET message_count = c.message_count
WHERE c.tenant_id = $1 AND c.id = ANY (ARRAY(
    SELECT s.id
    FROM conversation_refs s
    WHERE s.tenant_id = $1
      AND s.weights_version < (SELECT t.weights_version FROM tenants t WHERE t.id = $1)
    ORDER BY s.weights_version
    LIMIT $2
    FOR NO KEY UPDATE OF s SKIP LOCKED
))
"""

# How many conversations of the tenant still carry keys of older weights (the same range).
# $1 tenant_id
STALE_COUNT = """
SELECT count(*)
FROM conversation_refs c
WHERE c.tenant_id = $1
  AND c.weights_version < (SELECT t.weights_version FROM tenants t WHERE t.id = $1)
"""
