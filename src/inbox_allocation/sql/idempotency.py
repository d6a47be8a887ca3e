"""Idempotency keys: reserve before running, store the result after, replay on retry.

Scope (docs/decisions.md#idempotency): tenant, operator, method, path, key. The reservation is an
INSERT of a row without a response; the unique scope constraint makes exactly one request the owner,
also across service processes.
"""

# Reserve the key for this request, if the operator belongs to the tenant. No row: the key
# is taken (FIND tells by whom), or the operator is not the tenant's (CALLER_KNOWN; the
# request then goes on without idempotency and is refused by the route with 401).
# The row id comes from the service, like every id an INSERT … SELECT writes here: a volatile
# default (gen_random_uuid()) would keep a distributed database (Citus) from running the
# statement on the tenant's shard alone.
# $1 tenant_id, $2 operator_id, $3 method, $4 path, $5 key, $6 fingerprint, $7 ttl, $8 new id
RESERVE = """
INSERT INTO idempotency_keys
    (id, key, tenant_id, operator_id, endpoint, method, request_hash, expires_at)
SELECT $8, $5, o.tenant_id, o.id, $4, $3, $6, now() + $7::interval
FROM operators o
WHERE o.tenant_id = $1 AND o.id = $2
ON CONFLICT (tenant_id, operator_id, method, endpoint, key) DO NOTHING
RETURNING id
"""

# $1 tenant_id, $2 operator_id
CALLER_KNOWN = """
SELECT EXISTS (SELECT 1 FROM operators o WHERE o.tenant_id = $1 AND o.id = $2)
"""

# The row that holds the key (another request's reservation or stored result).
# $1 tenant_id, $2 operator_id, $3 method, $4 path, $5 key, $6 seconds without a heartbeat
# after which an unfinished reservation is considered abandoned (its owner stopped)
FIND = """
SELECT id, request_hash, response_status, response_body,
       expires_at <= now() AS expired,
       response_status IS NULL AND heartbeat_at < now() - make_interval(secs => $6) AS abandoned
FROM idempotency_keys
WHERE tenant_id = $1 AND operator_id = $2 AND method = $3 AND endpoint = $4 AND key = $5
"""

# Forget an expired key, or an abandoned reservation, so the request can run again.
# $1 tenant_id, $2 row id, $3 abandonment age in seconds
FORGET_STALE = """
DELETE FROM idempotency_keys
WHERE tenant_id = $1 AND id = $2
  AND (expires_at <= now()
       OR (response_status IS NULL AND heartbeat_at < now() - make_interval(secs => $3)))
"""

# The owner is still running.
# $1 tenant_id, $2 row id
HEARTBEAT = """
UPDATE idempotency_keys SET heartbeat_at = now()
WHERE tenant_id = $1 AND id = $2 AND response_status IS NULL
"""

# Last statement of every transaction of a request that holds a reservation: marks it
# executed if, and only if, the transaction wrote something (it then has a transaction id),
# and commits or rolls back with those writes. The check is `transaction_wrote(w.id)`
# (migration 0011), called with a column so that on Citus it runs on the node storing the
# tenant's rows, in the transaction that wrote them (the coordinator's transaction has no
# transaction id of its own); there it is a step of its own before the UPDATE.
# $1 tenant_id, $2 row id
MARK_EXECUTED = """
WITH wrote AS (
    SELECT w.id FROM idempotency_keys w
    WHERE w.tenant_id = $1 AND w.id = $2 AND NOT w.executed AND transaction_wrote(w.id)
)
UPDATE idempotency_keys k SET executed = true
FROM wrote
WHERE k.tenant_id = $1 AND k.id = wrote.id
"""

# $1 tenant_id, $2 row id, $3 status, $4 body bytes
STORE_RESULT = """
UPDATE idempotency_keys
SET response_status = $3, response_body = $4
WHERE tenant_id = $1 AND id = $2
"""

# A 5xx (or a crash) is not stored: the client may retry and run it again — unless the
# request's writes committed (`executed`), which must never run twice: then the given
# "applied, response lost" answer is stored for its retries instead.
# $1 tenant_id, $2 row id, $3 status and $4 body stored when executed
RELEASE = """
WITH released AS (
    DELETE FROM idempotency_keys d
    WHERE d.tenant_id = $1 AND d.id = $2 AND d.response_status IS NULL AND NOT d.executed
    RETURNING d.id
)
UPDATE idempotency_keys k SET response_status = $3, response_body = $4
WHERE k.tenant_id = $1 AND k.id = $2 AND k.response_status IS NULL AND k.executed
  AND NOT EXISTS (SELECT 1 FROM released)
"""

# Cleanup worker: one tenant per statement, in bounded batches so no long-held locks.
# $1 tenant_id, $2 batch size
DELETE_EXPIRED_BATCH = """
DELETE FROM idempotency_keys k
WHERE k.tenant_id = $1
  AND k.id IN (SELECT e.id FROM idempotency_keys e
               WHERE e.tenant_id = $1 AND e.expires_at < now()
               LIMIT $2)
"""
