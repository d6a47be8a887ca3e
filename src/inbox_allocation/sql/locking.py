"""The lock order. Every write path takes its row locks in this order, so no two
transactions can wait for each other in a cycle (a deadlock, answered 503 after a retry).

    1. tenant row            admin-level changes: operator role change and delete, weights
    2. inbox row             inbox delete (FOR UPDATE); subscribe, unsubscribe and new
                             conversations (the foreign key) take it FOR KEY SHARE
    3. operator status rows  ascending operator_id
    4. operator row          role change, delete; foreign-key checks of new references
                             (labels; not conversations: see "The status row" below)
    5. subscription rows
    6. conversation rows     ascending id when a statement locks several
    7. grace rows
    8. labels, then label attachments

A statement may take a lock out of this order only if it never waits for it (SKIP LOCKED or
NOWAIT): allocation takes the caller's status row NOWAIT (when it is busy, the request locks
it in a statement of its own, waiting, and allocates in the next one), then the conversation
it takes (the best one of its snapshot; only when someone holds that one, the best free one
of each inbox and priority class) and the winner's subscription with SKIP LOCKED; claim takes
its conversation NOWAIT; the weights recompute and the grace sweeper skip locked rows.

The status row is the guard of "which conversations may an operator hold". Every path that
gives a conversation to an operator holds that operator's status row (allocate and claim FOR
NO KEY UPDATE, reassign FOR SHARE for its target) and reads the subscriptions afterwards, in
a later statement; every path that takes subscriptions away or removes the operator
(unsubscribe, inbox delete, operator delete) takes the status rows of the operators concerned
FOR UPDATE before it touches a subscription or a conversation. So the two never interleave,
and a subscription needs no lock of its own except where one statement both locks the status
row and reads subscriptions (allocation: the winner's subscription FOR KEY SHARE SKIP LOCKED
catches an unsubscribe that committed after the statement's snapshot was taken).

The same rule keeps conversations from pointing at operators that are gone, which is why
conversation_refs.assigned_operator_id has no foreign key (migration 0012; the key's check
locked the operator row on every allocation): a path that assigns requires the operator's
status row and holds it (a deleted operator has none: it goes with the operator), and
operator delete locks that row FOR UPDATE, then re-queues and clears the operator's
conversations and deletes it in the same transaction.

The holder of a conversation is known only from the conversation row, which comes later in
the order: lifecycle transitions (resolve, deallocate, reassign, move) read the row without a
lock, lock the holder's status row (and the reassign target's, ascending), lock the
conversation, and start again if the holder changed meanwhile (LOCK_STATUS_ROWS below).

Multi-row updates (re-queues of unsubscribe and operator delete, inbox delete, grace rows of a
status change) lock their conversation rows ORDER BY id first, and inbox delete deletes
explicitly in this order, in batches, instead of relying on the order of foreign-key
cascades (PostgreSQL fires them by trigger name, which does not follow this list).
"""

# The status rows of the given operators, ascending, FOR SHARE: the operators cannot change
# status, be deleted or lose a subscription until this transaction ends; allocations of
# theirs that are in flight finish first. Deleted operators return no row.
# $1 tenant_id, $2 operator ids
LOCK_STATUS_ROWS_SHARED = """
SELECT s.operator_id
FROM operator_status s
JOIN operators o ON o.id = s.operator_id
WHERE s.tenant_id = $1 AND o.tenant_id = $1 AND s.operator_id = ANY($2::uuid[])
ORDER BY s.operator_id
FOR SHARE OF s
"""

# The same, FOR UPDATE: for paths that take subscriptions or the operator away.
# $1 tenant_id, $2 operator ids
LOCK_STATUS_ROWS_EXCLUSIVE = """
SELECT s.operator_id
FROM operator_status s
JOIN operators o ON o.id = s.operator_id
WHERE s.tenant_id = $1 AND o.tenant_id = $1 AND s.operator_id = ANY($2::uuid[])
ORDER BY s.operator_id
FOR UPDATE OF s
"""
