"""Event outbox, retention watermark, webhooks and their deliveries (docs/events.md).

`events` is the outbox: every state change that matters to an agent's screen inserts its
event in the same transaction as the change. Its position is (xid, seq): `xid` is the
writing transaction's id (pg_current_xact_id(), as a bigint: xid8 values stay far below
2^63) and `seq` a per-row sequence number. Readers deliver only rows whose xid is below the
xmin of their snapshot: every transaction below xmin has ended, so no row can still appear
below a position already delivered (a plain sequence cannot promise that: a reader could pass
a number whose transaction has not committed yet).

`event_purges` records, per tenant, the position up to which the retention worker deleted
events: a cursor below it may have missed deleted events and is refused (410).

`webhooks` / `webhook_deliveries`: a webhook's `position` is the last event it has been
sent (or skipped); deliveries are the log of attempts. Every table is tenant-keyed and, on
Citus, distributed by tenant_id in the colocation group of the other tables (foreign keys
are added after distributing, one per ALTER TABLE, as Citus requires).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from inbox_allocation.db.migrations import distribute_by_tenant, execute_script, undistribute

TABLES = ["events", "event_purges", "webhooks", "webhook_deliveries"]

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script("""
    CREATE SEQUENCE events_seq;

    CREATE TABLE events (
        tenant_id uuid NOT NULL,
        xid bigint NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
        seq bigint NOT NULL DEFAULT nextval('events_seq'),
        type text NOT NULL,
        occurred_at timestamptz NOT NULL DEFAULT now(),
        -- What visibility and the filters look at: the conversation's inbox (and, for a
        -- move, the inbox it left), and the operator the event is about.
        inbox_id uuid,
        from_inbox_id uuid,
        operator_id uuid,
        data jsonb NOT NULL,
        CONSTRAINT events_pkey PRIMARY KEY (tenant_id, xid, seq)
    );
    CREATE INDEX idx_events_tenant_occurred ON events (tenant_id, occurred_at);

    CREATE TABLE event_purges (
        tenant_id uuid NOT NULL,
        xid bigint NOT NULL,
        seq bigint NOT NULL,
        CONSTRAINT event_purges_pkey PRIMARY KEY (tenant_id)
    );

    CREATE TABLE webhooks (
        tenant_id uuid NOT NULL,
        id uuid NOT NULL DEFAULT gen_random_uuid(),
        url text NOT NULL,
        event_types text[],
        description text,
        secret text NOT NULL,
        enabled boolean NOT NULL DEFAULT true,
        disabled_reason text,
        -- The last event handled (delivered, given up on, or filtered out).
        position_xid bigint NOT NULL,
        position_seq bigint NOT NULL,
        -- The pending event being tried, its attempt count and when to try next.
        attempt integer NOT NULL DEFAULT 0,
        next_attempt_at timestamptz NOT NULL DEFAULT now(),
        failing_since timestamptz,
        created_at timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT webhooks_pkey PRIMARY KEY (tenant_id, id)
    );
    CREATE INDEX idx_webhooks_due ON webhooks (next_attempt_at) WHERE enabled;

    CREATE TABLE webhook_deliveries (
        tenant_id uuid NOT NULL,
        webhook_id uuid NOT NULL,
        id bigint GENERATED ALWAYS AS IDENTITY,
        event_id text NOT NULL,
        attempt integer NOT NULL,
        status_code integer,
        error text,
        duration_ms integer NOT NULL,
        next_attempt_at timestamptz,
        created_at timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT webhook_deliveries_pkey PRIMARY KEY (tenant_id, webhook_id, id)
    );
    CREATE INDEX idx_webhook_deliveries_created ON webhook_deliveries (tenant_id, created_at);
    """)
    distribute_by_tenant(TABLES)
    execute_script("""
    ALTER TABLE events ADD CONSTRAINT events_tenant_fkey
        FOREIGN KEY (tenant_id) REFERENCES tenants (id) ON DELETE CASCADE;
    ALTER TABLE event_purges ADD CONSTRAINT event_purges_tenant_fkey
        FOREIGN KEY (tenant_id) REFERENCES tenants (id) ON DELETE CASCADE;
    ALTER TABLE webhooks ADD CONSTRAINT webhooks_tenant_fkey
        FOREIGN KEY (tenant_id) REFERENCES tenants (id) ON DELETE CASCADE;
    ALTER TABLE webhook_deliveries ADD CONSTRAINT webhook_deliveries_tenant_fkey
        FOREIGN KEY (tenant_id) REFERENCES tenants (id) ON DELETE CASCADE;
    ALTER TABLE webhook_deliveries ADD CONSTRAINT webhook_deliveries_webhook_fkey
        FOREIGN KEY (tenant_id, webhook_id) REFERENCES webhooks (tenant_id, id)
        ON DELETE CASCADE;
    """)


def downgrade() -> None:
    execute_script("""
    ALTER TABLE webhook_deliveries DROP CONSTRAINT IF EXISTS webhook_deliveries_webhook_fkey;
    ALTER TABLE webhook_deliveries DROP CONSTRAINT IF EXISTS webhook_deliveries_tenant_fkey;
    ALTER TABLE webhooks DROP CONSTRAINT IF EXISTS webhooks_tenant_fkey;
    ALTER TABLE event_purges DROP CONSTRAINT IF EXISTS event_purges_tenant_fkey;
    ALTER TABLE events DROP CONSTRAINT IF EXISTS events_tenant_fkey;
    """)
    undistribute(TABLES)
    execute_script("""
    DROP TABLE IF EXISTS webhook_deliveries;
    DROP TABLE IF EXISTS webhooks;
    DROP TABLE IF EXISTS event_purges;
    DROP TABLE IF EXISTS events;
    DROP SEQUENCE IF EXISTS events_seq;
    """)
