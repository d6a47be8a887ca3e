"""Aged flag: the young-key index split by wait class, so the young scan never walks aged rows.

Allocation wants the best young (waiting < 24 h) and the best aged (>= 24 h) QUEUED
conversation of each inbox, each in the order of its own priority key. With the young-key
index over every queued row, the class was a filter inside the key-ordered scan, and the scan
read past every conversation that had turned 24 h less than a day or so before (in young-key
order they sit among the young ones): with a third of a 1M queue aged, ~280 index pages and
1.8 ms per allocation, against 0.25 ms for a bare SKIP LOCKED dequeue.

`aged` is true once last_message_at is 24 h 5 min old: set by a trigger whenever a row is
queued or gets a new message, and by the queue-aging sweeper for rows that cross the line
while they wait (workers). The young-key index leads with the flag, so the young scan reads
unflagged rows only (plus the few that crossed since the last sweep). Flagged rows can only
be young for a caller whose clock is over 5 minutes behind the database's; allocation then
also reads the flagged part. The aged scan does not use the flag. So the answer never depends
on the flag, only the amount of reading does.

The queue-age index of 0004 gains the flag as its third column: it still answers "does this
inbox hold aged conversations?" (two descents, one per flag value; PostgreSQL < 18 has no
skip scan, so its aged scan would otherwise read a young-only queue to the end) and now also
lets the sweeper find the unflagged rows by age.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from inbox_allocation.db.migrations import execute_script

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script("""
    ALTER TABLE conversation_refs ADD COLUMN aged boolean NOT NULL DEFAULT false;
    COMMENT ON COLUMN conversation_refs.aged IS
        'last_message_at was 24 h 5 min old at the last write or aging sweep (index hint)';

    -- The same interval as FLAG_AGED in sql/queue_aging.py.
    CREATE FUNCTION conversation_aged_flag() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        NEW.aged := NEW.last_message_at <= now() - interval '24 hours 5 minutes';
        RETURN NEW;
    END $$;

    CREATE TRIGGER conversation_refs_aged_flag
        BEFORE INSERT OR UPDATE OF last_message_at, state ON conversation_refs
        FOR EACH ROW WHEN (NEW.state = 'QUEUED')
        EXECUTE FUNCTION conversation_aged_flag();

    UPDATE conversation_refs SET aged = true
    WHERE state = 'QUEUED' AND last_message_at <= now() - interval '24 hours 5 minutes';

    DROP INDEX idx_conversations_allocation;
    DROP INDEX idx_conversations_queue_age;
    CREATE INDEX idx_conversations_allocation ON conversation_refs
        (tenant_id, inbox_id, aged, priority_young_key DESC, last_message_at ASC, id ASC)
        WHERE state = 'QUEUED';
    CREATE INDEX idx_conversations_queue_age ON conversation_refs
        (tenant_id, inbox_id, aged, last_message_at)
        WHERE state = 'QUEUED';
    """)


def downgrade() -> None:
    execute_script("""
    DROP INDEX IF EXISTS idx_conversations_queue_age;
    DROP INDEX IF EXISTS idx_conversations_allocation;
    CREATE INDEX idx_conversations_allocation ON conversation_refs
        (tenant_id, inbox_id, priority_young_key DESC, last_message_at ASC, id ASC)
        WHERE state = 'QUEUED';
    CREATE INDEX idx_conversations_queue_age ON conversation_refs
        (tenant_id, inbox_id, last_message_at)
        WHERE state = 'QUEUED';

    DROP TRIGGER IF EXISTS conversation_refs_aged_flag ON conversation_refs;
    DROP FUNCTION IF EXISTS conversation_aged_flag();
    ALTER TABLE conversation_refs DROP COLUMN IF EXISTS aged;
    """)
