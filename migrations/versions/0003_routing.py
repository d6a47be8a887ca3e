"""Routing: live priority keys, operator capacity, BUSY status, list indexes.

Live priority (docs/decisions.md#live-priority, evaluated at request time):
    P(t) = alpha * g(count) + beta * min((t - last_message_at) / 24h, 1)
    g(count) = min(log10(count + 1) / 3, 1)
For a conversation waiting less than 24 h, P(t) = young_key + beta * t / 24h with the
time-independent young_key = alpha * g - beta * last_message_at / 24h; after 24 h,
P(t) = aged_key + beta with aged_key = alpha * g. So P(t) = LEAST(young_key + beta*t/24h,
aged_key + beta), and within each class the order is that of its key: two indexes (one per
key) among QUEUED rows give the best candidate of each class without scanning the queue.
The keys are kept by a trigger on every write of count or last message time, and are
recomputed for a tenant when its weights change.

Capacity: operators.max_concurrent_conversations (NULL = unlimited), checked by allocate and
claim against a fresh count taken under the operator's status-row lock.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from inbox_allocation.db.migrations import execute_script

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script("""
    ALTER TYPE operator_status_type ADD VALUE IF NOT EXISTS 'BUSY';

    ALTER TABLE operators ADD COLUMN max_concurrent_conversations integer
        CONSTRAINT operators_capacity_positive CHECK (max_concurrent_conversations >= 1);
    COMMENT ON COLUMN operators.max_concurrent_conversations IS
        'At most this many ALLOCATED conversations via allocate/claim; NULL = unlimited';

    ALTER TABLE conversation_refs
        ADD COLUMN priority_young_key double precision,
        ADD COLUMN priority_aged_key double precision;
    COMMENT ON COLUMN conversation_refs.priority_young_key IS
        'alpha*g(count) - beta*epoch(last_message_at)/86400: allocation order under 24 h wait';
    COMMENT ON COLUMN conversation_refs.priority_aged_key IS
        'alpha*g(count): allocation order after 24 h wait';
    COMMENT ON COLUMN conversation_refs.priority_score IS
        'Priority at the last write; the API reports the live value at request time';

    CREATE FUNCTION conversation_priority_keys() RETURNS trigger
    LANGUAGE plpgsql AS $$
    DECLARE
        alpha double precision;
        beta double precision;
        waited double precision;
    BEGIN
        SELECT t.priority_weight_alpha, t.priority_weight_beta INTO alpha, beta
        FROM tenants t WHERE t.id = NEW.tenant_id;
        NEW.priority_aged_key :=
            alpha * LEAST(log((NEW.message_count + 1)::double precision) / 3, 1);
        NEW.priority_young_key := NEW.priority_aged_key
            - beta * extract(epoch FROM NEW.last_message_at)::double precision / 86400;
        waited := extract(epoch FROM now() - NEW.last_message_at)::double precision;
        NEW.priority_score := round(
            (NEW.priority_aged_key + beta * LEAST(waited / 86400, 1))::numeric, 6);
        RETURN NEW;
    END $$;

    CREATE TRIGGER conversation_refs_priority_keys
        BEFORE INSERT OR UPDATE OF message_count, last_message_at, tenant_id
        ON conversation_refs
        FOR EACH ROW EXECUTE FUNCTION conversation_priority_keys();

    -- Compute the keys of existing rows (the trigger fires on this no-op assignment).
    UPDATE conversation_refs SET message_count = message_count;
    ALTER TABLE conversation_refs
        ALTER COLUMN priority_young_key SET NOT NULL,
        ALTER COLUMN priority_aged_key SET NOT NULL;

    -- The allocation indexes: best candidate per (tenant, inbox) of each class.
    DROP INDEX idx_conversations_allocation;
    CREATE INDEX idx_conversations_allocation ON conversation_refs
        (tenant_id, inbox_id, priority_young_key DESC, last_message_at ASC, id ASC)
        WHERE state = 'QUEUED';
    CREATE INDEX idx_conversations_allocation_aged ON conversation_refs
        (tenant_id, inbox_id, priority_aged_key DESC, last_message_at ASC, id ASC)
        WHERE state = 'QUEUED';

    -- Keyset lists (sort newest / oldest) without sorting the tenant's rows.
    CREATE INDEX idx_conversations_tenant_recent ON conversation_refs
        (tenant_id, last_message_at DESC, id DESC);
    CREATE INDEX idx_conversations_inbox_recent ON conversation_refs
        (tenant_id, inbox_id, last_message_at DESC, id DESC);
    """)


def downgrade() -> None:
    execute_script("""
    DROP INDEX IF EXISTS idx_conversations_inbox_recent;
    DROP INDEX IF EXISTS idx_conversations_tenant_recent;
    DROP INDEX IF EXISTS idx_conversations_allocation_aged;
    DROP INDEX IF EXISTS idx_conversations_allocation;
    CREATE INDEX idx_conversations_allocation ON conversation_refs
        (tenant_id, inbox_id, state, priority_score DESC, last_message_at ASC)
        WHERE state = 'QUEUED';

    DROP TRIGGER IF EXISTS conversation_refs_priority_keys ON conversation_refs;
    DROP FUNCTION IF EXISTS conversation_priority_keys();
    ALTER TABLE conversation_refs
        DROP COLUMN IF EXISTS priority_young_key,
        DROP COLUMN IF EXISTS priority_aged_key;

    ALTER TABLE operators DROP COLUMN IF EXISTS max_concurrent_conversations;

    -- PostgreSQL cannot drop an enum value: rebuild the type without BUSY.
    UPDATE operator_status SET status = 'OFFLINE' WHERE status = 'BUSY';
    ALTER TABLE operator_status ALTER COLUMN status DROP DEFAULT;
    ALTER TYPE operator_status_type RENAME TO operator_status_type_with_busy;
    CREATE TYPE operator_status_type AS ENUM ('AVAILABLE', 'OFFLINE');
    ALTER TABLE operator_status ALTER COLUMN status TYPE operator_status_type
        USING status::text::operator_status_type;
    ALTER TABLE operator_status ALTER COLUMN status SET DEFAULT 'OFFLINE';
    DROP TYPE operator_status_type_with_busy;
    """)
