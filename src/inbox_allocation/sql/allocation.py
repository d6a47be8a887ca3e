"""Allocation (the next conversation for an operator) and claim (a chosen one).

Locks follow the order of sql/locking.py: the caller's status row (allocation: NOWAIT in its
one statement, else in a statement of its own that waits), then conversation rows, which
allocation and claim never wait for (SKIP LOCKED / NOWAIT). The status row keeps the caller's
subscriptions from being removed meanwhile. Conversation rows are locked FOR NO KEY UPDATE:
that does not block the key-share locks of foreign-key checks (label attachments, grace rows).

Capacity (max_concurrent_conversations): an uncapped operator allocates in one statement; a
capped one in a transaction that locks its status row, counts its ALLOCATED conversations
(a fresh snapshot, after any concurrent allocation of its own has committed) and only then
allocates — so concurrent requests of one operator can never overshoot.
"""

from inbox_allocation.sql.conversations import (
    CHANGED_WITH_LABELS,
    CONVERSATION_COLUMNS,
    LABELS_JSON,
    conversation_columns,
    reported_priority,
)
from inbox_allocation.sql.events import (
    changed_conversations,
    conversation_event,
    events_written,
)


# The best QUEUED conversation of each subscribed inbox among the rows matching `condition`,
# in the order of the priority key `key` (one class scan of ALLOCATE_NEXT below). `lock`:
# the row is locked FOR NO KEY UPDATE SKIP LOCKED as the scan finds it (rows another
# transaction holds are passed over); without it, the best row of the snapshot is returned
# whether someone holds it or not.
def _best_of_each_inbox(condition: str, key: str, *, lock: bool) -> str:
    locking = "\n        FOR NO KEY UPDATE OF c SKIP LOCKED" if lock else ""
    return f"""
    SELECT pick.*, subscribed.beta
    FROM subscribed
    CROSS JOIN LATERAL (
        SELECT c.id, c.inbox_id, c.priority_young_key, c.priority_aged_key, c.last_message_at
        FROM conversation_refs c
        WHERE c.tenant_id = $1 AND c.inbox_id = subscribed.inbox_id AND c.state = 'QUEUED'
          AND {condition}
        ORDER BY c.{key} DESC, c.last_message_at ASC, c.id ASC
        LIMIT 1{locking}
    ) AS pick"""


# Young: waiting under 24 h at $3. `flag` picks the unflagged or the flagged part of the
# index. No upper bound on the key: a row whose keys still carry older weights (a weights
# change is being recomputed, services/priority_keys.py) can lie above the highest key a
# young row has under the current weights, and must stay reachable.
def _young(flag: str, *, lock: bool) -> str:
    return _best_of_each_inbox(
        f"{flag} AND c.last_message_at > to_timestamp($3::float8 - 86400)",
        "priority_young_key",
        lock=lock,
    )


def _aged(*, lock: bool) -> str:
    return _best_of_each_inbox(
        "c.last_message_at <= to_timestamp($3::float8 - 86400)", "priority_aged_key", lock=lock
    )


# The candidates: per subscribed inbox, the best row of each priority class. The flagged
# young rows are read only when the caller's clock is over 5 minutes behind the database's
# (flags are set 24 h 5 min after the last message, by the database's clock); the aged class
# only when the inbox holds such a row (has_aged).
def _candidates(*, lock: bool) -> str:
    return f"""{_young("NOT c.aged", lock=lock)}
    UNION ALL{_young("c.aged", lock=lock)}
    WHERE to_timestamp($3::float8) < statement_timestamp() - interval '5 minutes'
    UNION ALL{_aged(lock=lock)}
    WHERE subscribed.has_aged"""


# Candidates compared by their priority at instant $3; ties: longest waiting, then id.
_PRIORITY_ORDER = """ORDER BY LEAST(priority_young_key + beta * $3::float8 / 86400,
                   priority_aged_key + beta) DESC,
             last_message_at ASC, id ASC"""


# One statement, one round trip:
# - the caller: member of the tenant and AVAILABLE; its status row is locked NOWAIT (a
#   statement that waited would go on with a snapshot from before the wait: the service
#   then locks it with LOCK_CALLER and runs this again), so a status change, unsubscribe or
#   delete of the caller waits for this allocation to finish (and a status change then gives
#   it a grace row if it goes OFFLINE); $4 = true admits only uncapped operators (capped ones
#   come through LOCK_CALLER + COUNT_ACTIVE in a transaction first, and pass false);
# - its subscribed inboxes;
# - the best QUEUED conversation of all of them by the allocation order
#   (docs/decisions.md#allocation-order), found in two steps so that in the common case one
#   row is locked, not one per inbox and class:
#   1. `seen`: per subscribed inbox and priority class, the best row of the snapshot, read
#      without a lock (short index descents); the best of those is then locked
#      FOR NO KEY UPDATE SKIP LOCKED and re-checked on its newest version: still QUEUED, in
#      the same inbox (`first`).
#      It is the best row the snapshot holds, so when it is free nothing free is better;
#   2. only when another transaction holds it, or took it since the snapshot (`first` is
#      empty): `held_over`, the scans of step 1 again, each locking the best row it can
#      take (FOR NO KEY UPDATE SKIP LOCKED: rows others hold are passed over, none waits),
#      and the best of those. This is exactly what the statement did in one step before:
#      the same answer, but it locks a row per inbox and class, which step 1 avoids.
#   Either way two callers never receive the same conversation and none waits;
#   young = waiting under 24 h at $3, ordered by priority_young_key, read from the rows not
#   flagged `aged` (migration 0005) and, only when the caller's clock is over 5 minutes
#   behind the database's, from the flagged rows too; aged = waiting 24 h or more, ordered
#   by priority_aged_key, scanned only when the inbox holds such a row (two descents of
#   idx_conversations_queue_age: without skip scan, PostgreSQL < 18 would read a young-only
#   queue to the end to find none);
# - the winner's subscription locked FOR KEY SHARE SKIP LOCKED, never waiting: an unsubscribe
#   (or inbox delete) that committed after this statement's snapshot makes it allocate nothing
#   (the client retries); one in progress holds the caller's status row, which
#   this statement could not have locked — never a conversation of an inbox the operator
#   has left;
# - the winner marked ALLOCATED, and returned with its live priority at $3;
# - its conversation.allocated event written by the same statement (sql/events.py).
# Every table is filtered by the tenant itself (one shard group on Citus); the tenant's
# weights are read in their own CTE because Citus refuses a locking CTE that reads the
# reference table `tenants`.
# $1 tenant_id, $2 operator_id, $3 the instant (epoch seconds), $4 uncapped callers only
ALLOCATE_NEXT = f"""
WITH weights AS (
    SELECT t.priority_weight_alpha::float8 AS alpha,
           t.priority_weight_beta::float8 AS beta
    FROM tenants t
    WHERE t.id = $1
),
caller AS (
    SELECT s.operator_id
    FROM operator_status s
    JOIN operators o ON o.id = s.operator_id
    WHERE s.tenant_id = $1 AND o.tenant_id = $1 AND s.operator_id = $2
      AND s.status = 'AVAILABLE'
      AND (NOT $4::bool OR o.max_concurrent_conversations IS NULL)
    FOR NO KEY UPDATE OF s NOWAIT
),
subscribed AS (
    SELECT sub.inbox_id, weights.alpha, weights.beta,
           (SELECT min(q.last_message_at) FROM conversation_refs q
            WHERE q.tenant_id = $1 AND q.inbox_id = sub.inbox_id AND q.state = 'QUEUED'
              AND NOT q.aged) <= to_timestamp($3::float8 - 86400)
           OR (SELECT min(q.last_message_at) FROM conversation_refs q
               WHERE q.tenant_id = $1 AND q.inbox_id = sub.inbox_id AND q.state = 'QUEUED'
                 AND q.aged) <= to_timestamp($3::float8 - 86400) AS has_aged
    FROM caller
    CROSS JOIN weights
    JOIN operator_inbox_subscriptions sub
      ON sub.tenant_id = $1 AND sub.operator_id = caller.operator_id
),
seen AS ({_candidates(lock=False)}
),
best_seen AS (
    SELECT seen.id, seen.inbox_id FROM seen {_PRIORITY_ORDER} LIMIT 1
),
first AS (
    SELECT c.id, c.inbox_id
    FROM best_seen
    JOIN conversation_refs c
      ON c.tenant_id = $1 AND c.id = best_seen.id AND c.inbox_id = best_seen.inbox_id
    WHERE c.state = 'QUEUED'
    FOR NO KEY UPDATE OF c SKIP LOCKED
),
held_over AS ({_candidates(lock=True)}
),
chosen AS (
    SELECT id, inbox_id FROM first
    UNION ALL
    (SELECT id, inbox_id FROM held_over
     WHERE NOT EXISTS (SELECT 1 FROM first)
     {_PRIORITY_ORDER}
     LIMIT 1)
    LIMIT 1
),
still_subscribed AS (
    SELECT sub.id
    FROM chosen
    JOIN operator_inbox_subscriptions sub
      ON sub.tenant_id = $1 AND sub.operator_id = $2 AND sub.inbox_id = chosen.inbox_id
    FOR KEY SHARE OF sub SKIP LOCKED
),
allocated AS (
    UPDATE conversation_refs c
    SET state = 'ALLOCATED', assigned_operator_id = $2, updated_at = now()
    FROM chosen
    WHERE c.tenant_id = $1 AND c.id = chosen.id
      AND EXISTS (SELECT 1 FROM still_subscribed)
    RETURNING c.*
),
{changed_conversations("allocated", conversation_columns(reported_priority("$3::float8")))},
{
    conversation_event(
        "event",
        "conversation.allocated",
        extra="'operator_id', changed.assigned_operator_id, 'via', 'allocate'",
    )
}
{CHANGED_WITH_LABELS}WHERE {events_written()}
"""

# Why nothing was allocated (only run after ALLOCATE_NEXT returned no row).
# $1 tenant_id, $2 operator_id
ALLOCATION_BLOCKER = """
SELECT o.id IS NOT NULL AS operator_exists,
       s.status::text AS status,
       o.max_concurrent_conversations IS NOT NULL AS capped,
       EXISTS (SELECT 1 FROM operator_inbox_subscriptions sub
               JOIN inboxes i ON i.id = sub.inbox_id AND i.tenant_id = $1
               WHERE sub.tenant_id = $1 AND sub.operator_id = $2) AS has_subscriptions
FROM (SELECT 1) AS one
LEFT JOIN operators o ON o.id = $2 AND o.tenant_id = $1
LEFT JOIN operator_status s ON s.tenant_id = $1 AND s.operator_id = o.id
"""

# The caller's availability and capacity; its status row stays locked for the rest of the
# transaction, which serialises the operator's allocations and claims.
# $1 tenant_id, $2 operator_id
LOCK_CALLER = """
SELECT s.status::text AS status, o.max_concurrent_conversations
FROM operator_status s
JOIN operators o ON o.id = s.operator_id
WHERE s.tenant_id = $1 AND o.tenant_id = $1 AND s.operator_id = $2
FOR NO KEY UPDATE OF s
"""

# Run after LOCK_CALLER in the same transaction: a new snapshot, so it includes every
# allocation of this operator committed before the lock was granted.
# $1 tenant_id, $2 operator_id
COUNT_ACTIVE = """
SELECT count(*)
FROM conversation_refs c
WHERE c.tenant_id = $1 AND c.assigned_operator_id = $2 AND c.state = 'ALLOCATED'
"""

# The claimed conversation, locked without waiting: a lock held by a concurrent claim (or
# allocation) raises lock_not_available → 409 CONVERSATION_ALREADY_CLAIMED.
# $1 tenant_id, $2 conversation_id
LOCK_CLAIM_TARGET = f"""
SELECT {CONVERSATION_COLUMNS}, {LABELS_JSON}
FROM conversation_refs c
JOIN tenants t ON t.id = $1
WHERE c.tenant_id = $1 AND c.id = $2
FOR NO KEY UPDATE OF c NOWAIT
"""

# $1 tenant_id, $2 conversation_id, $3 operator_id
ASSIGN_TO_CALLER = f"""
WITH assigned AS (
    UPDATE conversation_refs c
    SET state = 'ALLOCATED', assigned_operator_id = $3, updated_at = now()
    WHERE c.tenant_id = $1 AND c.id = $2 AND c.state = 'QUEUED'
    RETURNING c.*
),
{changed_conversations("assigned")},
{
    conversation_event(
        "event",
        "conversation.allocated",
        extra="'operator_id', changed.assigned_operator_id, 'via', 'claim'",
    )
}
{CHANGED_WITH_LABELS}WHERE {events_written()}
"""

# The caller's subscription to the conversation's inbox. Read without a lock: the caller's
# status row, locked by this transaction before, keeps unsubscribe and inbox delete out.
# $1 tenant_id, $2 operator_id, $3 inbox_id
SUBSCRIPTION = """
SELECT sub.id
FROM operator_inbox_subscriptions sub
JOIN inboxes i ON i.id = sub.inbox_id AND i.tenant_id = $1
WHERE sub.tenant_id = $1 AND sub.operator_id = $2 AND sub.inbox_id = $3
"""
