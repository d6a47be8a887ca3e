"""The assignee of a conversation is guarded by the operator's status row, not a foreign key.

`conversation_refs (tenant_id, assigned_operator_id) → operators (tenant_id, id)` made every
allocation, claim and reassign lock the operator row FOR KEY SHARE (one more tuple lock and
WAL record per allocation, 0.25 ms in EXPLAIN ANALYZE). The lock protocol already guarantees
what it checked (src/inbox_allocation/sql/locking.py): every path that gives a conversation
to an operator holds that operator's status row and requires it (a deleted operator has
none), and operator deletion locks the status row FOR UPDATE, then re-queues and clears the
operator's conversations before deleting it, in one transaction. So no conversation can
reference a deleted operator, or an operator of another tenant (the statements that assign
take the operator from the caller's own tenant).

Works the same on Citus: dropping a constraint of a distributed table is propagated to its
shards. The downgrade adds the key back as migration 0006 made it.

lock_timeout: ALTER TABLE takes an ACCESS EXCLUSIVE lock on conversation_refs (and the
downgrade a SHARE ROW EXCLUSIVE lock on operators); with a 5 s lock_timeout the migration
fails, changing nothing, rather than queue every request behind a long transaction.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04
"""

from inbox_allocation.db.migrations import execute_script

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script("""
    SET LOCAL lock_timeout = '5s';
    ALTER TABLE conversation_refs
        DROP CONSTRAINT IF EXISTS conversation_refs_assigned_operator_fkey;
    """)


def downgrade() -> None:
    execute_script("""
    SET LOCAL lock_timeout = '5s';
    ALTER TABLE conversation_refs
        ADD CONSTRAINT conversation_refs_assigned_operator_fkey
        FOREIGN KEY (tenant_id, assigned_operator_id) REFERENCES operators (tenant_id, id);
    """)
