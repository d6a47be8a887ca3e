"""Queue-age index: which priority classes an inbox's queue holds, in one index probe.

Allocation looks for the best young (waiting < 24 h) and the best aged (>= 24 h) QUEUED
conversation of each subscribed inbox, each through its own priority-key index. The class
boundary moves with time, so it is a filter on last_message_at inside those scans: when an
inbox holds no conversation of a class, the scan for that class would read every queued
entry of the inbox before giving up (a queue of only young conversations, the normal case,
made every allocation linear in the inbox's depth: ~20 ms at 300k on PostgreSQL 15).
The oldest and newest queued last_message_at of an inbox, read from this index, tell the
statement which classes exist, so a class scan only runs when it will find a row.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from inbox_allocation.db.migrations import execute_script

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script("""
    CREATE INDEX idx_conversations_queue_age ON conversation_refs
        (tenant_id, inbox_id, last_message_at)
        WHERE state = 'QUEUED';
    """)


def downgrade() -> None:
    execute_script("""
    DROP INDEX IF EXISTS idx_conversations_queue_age;
    """)
