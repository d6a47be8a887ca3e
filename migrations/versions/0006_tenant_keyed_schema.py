"""Tenant-keyed schema: tenant_id in every table, primary key, unique key and foreign key.

So that the schema can be distributed by tenant (Citus) and every statement of a request can
be answered from one tenant's rows:
- the four tables that reached their tenant only through a parent (subscriptions, operator
  status, conversation labels, grace rows) get a tenant_id, copied from that parent;
- every primary key is (tenant_id, id), except tenants (id); every unique key leads with
  tenant_id; every foreign key carries tenant_id and references the parent's
  (tenant_id, id), so a row can never point into another tenant; every table references
  tenants (id) by its tenant_id;
- ON DELETE CASCADE stays where it was. The two ON DELETE SET NULL keys
  (conversation_refs.assigned_operator_id, labels.created_by) become NO ACTION: Citus
  refuses SET NULL on a key that includes the distribution column, so the service clears
  those columns itself, in the transaction that deletes the operator;
- every foreign key has an index that leads with its columns, so a cascading or checking
  delete of a parent reads an index, never the whole child table.
Rows that tie two tenants together (a subscription of one tenant's operator to another's
inbox: impossible through the API) make the upgrade fail on the new foreign keys, changing
nothing.

On Citus (the `citus` extension installed), the same migration distributes the tables
(`inbox_allocation.db.migrations.distribute_by_tenant`): `tenants` becomes a reference
table, every other table is distributed by tenant_id in one colocation group, and the
foreign keys are added after that. Shard count: alembic `-x citus_shard_count=N` or the
environment variable CITUS_SHARD_COUNT, else Citus's `citus.shard_count` (default 32; test
clusters use 4). `citus.enable_unsafe_triggers` is switched on for the migration's
transaction only: Citus refuses to distribute a table with triggers otherwise (the
priority-key and aged-flag triggers of conversation_refs, which then run on the shards).
Moving the rows into the shards fires those BEFORE INSERT triggers: a conversation's
priority_score (the priority at its last write, never reported: the API computes the live
one) and its `aged` hint are refreshed as of the migration; every other value is kept, and
so are all rows and relationships (checked on a three-node cluster, down and up again).

lock_timeout: every ALTER TABLE here takes an ACCESS EXCLUSIVE lock. Waiting for one behind
a long transaction (a slow request, a sweeper batch, an open psql session) would queue every
new request on that table behind the migration, an outage for as long as the wait lasts. With
a 5 s lock_timeout the migration fails instead, rolls back completely (one transaction) and
can be run again at a quieter moment. Once it holds its locks it rewrites the tables' keys
and indexes, which on large tables takes a while: run it in a maintenance window.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from inbox_allocation.db.migrations import distribute_by_tenant, execute_script, undistribute

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# Distributed by tenant_id, in this order (the first one creates the colocation group).
DISTRIBUTED = [
    "inboxes",
    "operators",
    "operator_inbox_subscriptions",
    "operator_status",
    "conversation_refs",
    "labels",
    "conversation_labels",
    "grace_period_assignments",
    "idempotency_keys",
]


def upgrade() -> None:
    execute_script("""
    SET LOCAL lock_timeout = '5s';

    -- tenant_id for the tables that reached their tenant through a parent row.
    ALTER TABLE operator_inbox_subscriptions ADD COLUMN tenant_id uuid;
    UPDATE operator_inbox_subscriptions s SET tenant_id = o.tenant_id
    FROM operators o WHERE o.id = s.operator_id;
    ALTER TABLE operator_inbox_subscriptions ALTER COLUMN tenant_id SET NOT NULL;

    ALTER TABLE operator_status ADD COLUMN tenant_id uuid;
    UPDATE operator_status s SET tenant_id = o.tenant_id
    FROM operators o WHERE o.id = s.operator_id;
    ALTER TABLE operator_status ALTER COLUMN tenant_id SET NOT NULL;

    ALTER TABLE conversation_labels ADD COLUMN tenant_id uuid;
    UPDATE conversation_labels cl SET tenant_id = c.tenant_id
    FROM conversation_refs c WHERE c.id = cl.conversation_id;
    ALTER TABLE conversation_labels ALTER COLUMN tenant_id SET NOT NULL;

    ALTER TABLE grace_period_assignments ADD COLUMN tenant_id uuid;
    UPDATE grace_period_assignments g SET tenant_id = c.tenant_id
    FROM conversation_refs c WHERE c.id = g.conversation_id;
    ALTER TABLE grace_period_assignments ALTER COLUMN tenant_id SET NOT NULL;

    -- Every foreign key goes (they are added again below, with tenant_id).
    ALTER TABLE inboxes DROP CONSTRAINT inboxes_tenant_id_fkey;
    ALTER TABLE operators DROP CONSTRAINT operators_tenant_id_fkey;
    ALTER TABLE operator_inbox_subscriptions
        DROP CONSTRAINT operator_inbox_subscriptions_inbox_id_fkey,
        DROP CONSTRAINT operator_inbox_subscriptions_operator_id_fkey;
    ALTER TABLE operator_status DROP CONSTRAINT operator_status_operator_id_fkey;
    ALTER TABLE conversation_refs
        DROP CONSTRAINT conversation_refs_tenant_id_fkey,
        DROP CONSTRAINT conversation_refs_inbox_id_fkey,
        DROP CONSTRAINT conversation_refs_inbox_same_tenant,
        DROP CONSTRAINT conversation_refs_assigned_operator_id_fkey;
    ALTER TABLE labels
        DROP CONSTRAINT labels_tenant_id_fkey,
        DROP CONSTRAINT labels_inbox_id_fkey,
        DROP CONSTRAINT labels_inbox_same_tenant,
        DROP CONSTRAINT labels_created_by_fkey;
    ALTER TABLE conversation_labels
        DROP CONSTRAINT conversation_labels_conversation_id_fkey,
        DROP CONSTRAINT conversation_labels_label_id_fkey;
    ALTER TABLE grace_period_assignments
        DROP CONSTRAINT grace_period_assignments_conversation_id_fkey,
        DROP CONSTRAINT grace_period_assignments_operator_id_fkey;
    ALTER TABLE idempotency_keys
        DROP CONSTRAINT idempotency_keys_tenant_id_fkey,
        DROP CONSTRAINT idempotency_keys_operator_id_fkey;

    -- Primary keys (tenant_id, id).
    ALTER TABLE inboxes DROP CONSTRAINT inboxes_pkey, DROP CONSTRAINT inboxes_id_tenant_key,
        ADD CONSTRAINT inboxes_pkey PRIMARY KEY (tenant_id, id);
    ALTER TABLE operators DROP CONSTRAINT operators_pkey,
        ADD CONSTRAINT operators_pkey PRIMARY KEY (tenant_id, id);
    ALTER TABLE operator_inbox_subscriptions DROP CONSTRAINT operator_inbox_subscriptions_pkey,
        ADD CONSTRAINT operator_inbox_subscriptions_pkey PRIMARY KEY (tenant_id, id);
    ALTER TABLE operator_status DROP CONSTRAINT operator_status_pkey,
        ADD CONSTRAINT operator_status_pkey PRIMARY KEY (tenant_id, id);
    ALTER TABLE conversation_refs DROP CONSTRAINT conversation_refs_pkey,
        ADD CONSTRAINT conversation_refs_pkey PRIMARY KEY (tenant_id, id);
    ALTER TABLE labels DROP CONSTRAINT labels_pkey,
        ADD CONSTRAINT labels_pkey PRIMARY KEY (tenant_id, id);
    ALTER TABLE conversation_labels DROP CONSTRAINT conversation_labels_pkey,
        ADD CONSTRAINT conversation_labels_pkey PRIMARY KEY (tenant_id, id);
    ALTER TABLE grace_period_assignments DROP CONSTRAINT grace_period_assignments_pkey,
        ADD CONSTRAINT grace_period_assignments_pkey PRIMARY KEY (tenant_id, id);
    ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_pkey,
        ADD CONSTRAINT idempotency_keys_pkey PRIMARY KEY (tenant_id, id);

    -- Unique keys within the tenant (the names stay; idx_inboxes_tenant_phone,
    -- idx_conversations_external_id and uq_idempotency_scope already lead with tenant_id).
    DROP INDEX idx_subscriptions_operator_inbox;
    CREATE UNIQUE INDEX idx_subscriptions_operator_inbox
        ON operator_inbox_subscriptions (tenant_id, operator_id, inbox_id);
    ALTER TABLE operator_status DROP CONSTRAINT operator_status_operator_id_key,
        ADD CONSTRAINT operator_status_operator_id_key UNIQUE (tenant_id, operator_id);
    DROP INDEX idx_labels_inbox_name;
    CREATE UNIQUE INDEX idx_labels_inbox_name ON labels (tenant_id, inbox_id, name);
    DROP INDEX idx_conv_labels_conv_label;
    CREATE UNIQUE INDEX idx_conv_labels_conv_label
        ON conversation_labels (tenant_id, conversation_id, label_id);
    DROP INDEX idx_grace_conversation;
    CREATE UNIQUE INDEX idx_grace_conversation
        ON grace_period_assignments (tenant_id, conversation_id);

    -- Indexes for the foreign keys (and the per-tenant sweeps), leading with tenant_id.
    DROP INDEX idx_subscriptions_operator_id;
    CREATE INDEX idx_subscriptions_operator_id
        ON operator_inbox_subscriptions (tenant_id, operator_id);
    DROP INDEX idx_subscriptions_inbox_id;
    CREATE INDEX idx_subscriptions_inbox_id ON operator_inbox_subscriptions (tenant_id, inbox_id);
    DROP INDEX idx_operator_status_status;
    CREATE INDEX idx_operator_status_status ON operator_status (tenant_id, status);
    CREATE INDEX idx_labels_created_by ON labels (tenant_id, created_by)
        WHERE created_by IS NOT NULL;
    DROP INDEX idx_conv_labels_conversation;
    CREATE INDEX idx_conv_labels_conversation ON conversation_labels (tenant_id, conversation_id);
    DROP INDEX idx_conv_labels_label;
    CREATE INDEX idx_conv_labels_label ON conversation_labels (tenant_id, label_id);
    DROP INDEX idx_grace_expires;
    CREATE INDEX idx_grace_expires ON grace_period_assignments (tenant_id, expires_at);
    DROP INDEX idx_grace_operator;
    CREATE INDEX idx_grace_operator ON grace_period_assignments (tenant_id, operator_id);
    DROP INDEX idx_idempotency_keys_expires_at;
    CREATE INDEX idx_idempotency_keys_expires_at ON idempotency_keys (tenant_id, expires_at);
    """)
    # Other foreign keys' indexes, already in place: inboxes and operators (tenant_id) by
    # their primary keys; conversation_refs (tenant_id, inbox_id) by
    # idx_conversations_inbox_recent and (tenant_id, assigned_operator_id) by
    # idx_conversations_operator; labels (tenant_id, inbox_id) by idx_labels_inbox_id;
    # operator_status, conversation_labels, grace rows and idempotency keys by their unique
    # keys.

    distribute_by_tenant(DISTRIBUTED, reference=("tenants",))

    # Foreign keys after distribution (Citus refuses to distribute a table that has foreign
    # keys to tables not yet distributed), one per ALTER TABLE (Citus refuses several
    # ADD CONSTRAINT subcommands in one command on a distributed table).
    execute_script("""
    ALTER TABLE inboxes
        ADD CONSTRAINT inboxes_tenant_fkey
        FOREIGN KEY (tenant_id) REFERENCES tenants (id) ON DELETE CASCADE;
    ALTER TABLE operators
        ADD CONSTRAINT operators_tenant_fkey
        FOREIGN KEY (tenant_id) REFERENCES tenants (id) ON DELETE CASCADE;
    ALTER TABLE operator_inbox_subscriptions
        ADD CONSTRAINT operator_inbox_subscriptions_tenant_fkey
        FOREIGN KEY (tenant_id) REFERENCES tenants (id) ON DELETE CASCADE;
    ALTER TABLE operator_inbox_subscriptions
        ADD CONSTRAINT operator_inbox_subscriptions_operator_fkey
        FOREIGN KEY (tenant_id, operator_id) REFERENCES operators (tenant_id, id)
        ON DELETE CASCADE;
    ALTER TABLE operator_inbox_subscriptions
        ADD CONSTRAINT operator_inbox_subscriptions_inbox_fkey
        FOREIGN KEY (tenant_id, inbox_id) REFERENCES inboxes (tenant_id, id)
        ON DELETE CASCADE;
    ALTER TABLE operator_status
        ADD CONSTRAINT operator_status_tenant_fkey
        FOREIGN KEY (tenant_id) REFERENCES tenants (id) ON DELETE CASCADE;
    ALTER TABLE operator_status
        ADD CONSTRAINT operator_status_operator_fkey
        FOREIGN KEY (tenant_id, operator_id) REFERENCES operators (tenant_id, id)
        ON DELETE CASCADE;
    ALTER TABLE conversation_refs
        ADD CONSTRAINT conversation_refs_tenant_fkey
        FOREIGN KEY (tenant_id) REFERENCES tenants (id) ON DELETE CASCADE;
    ALTER TABLE conversation_refs
        ADD CONSTRAINT conversation_refs_inbox_fkey
        FOREIGN KEY (tenant_id, inbox_id) REFERENCES inboxes (tenant_id, id)
        ON DELETE CASCADE;
    -- NO ACTION: deleting an operator first clears it from its conversations.
    ALTER TABLE conversation_refs
        ADD CONSTRAINT conversation_refs_assigned_operator_fkey
        FOREIGN KEY (tenant_id, assigned_operator_id) REFERENCES operators (tenant_id, id);
    ALTER TABLE labels
        ADD CONSTRAINT labels_tenant_fkey
        FOREIGN KEY (tenant_id) REFERENCES tenants (id) ON DELETE CASCADE;
    ALTER TABLE labels
        ADD CONSTRAINT labels_inbox_fkey
        FOREIGN KEY (tenant_id, inbox_id) REFERENCES inboxes (tenant_id, id)
        ON DELETE CASCADE;
    -- NO ACTION: deleting an operator first clears it from the labels it created.
    ALTER TABLE labels
        ADD CONSTRAINT labels_created_by_fkey
        FOREIGN KEY (tenant_id, created_by) REFERENCES operators (tenant_id, id);
    ALTER TABLE conversation_labels
        ADD CONSTRAINT conversation_labels_tenant_fkey
        FOREIGN KEY (tenant_id) REFERENCES tenants (id) ON DELETE CASCADE;
    ALTER TABLE conversation_labels
        ADD CONSTRAINT conversation_labels_conversation_fkey
        FOREIGN KEY (tenant_id, conversation_id) REFERENCES conversation_refs (tenant_id, id)
        ON DELETE CASCADE;
    ALTER TABLE conversation_labels
        ADD CONSTRAINT conversation_labels_label_fkey
        FOREIGN KEY (tenant_id, label_id) REFERENCES labels (tenant_id, id)
        ON DELETE CASCADE;
    ALTER TABLE grace_period_assignments
        ADD CONSTRAINT grace_period_assignments_tenant_fkey
        FOREIGN KEY (tenant_id) REFERENCES tenants (id) ON DELETE CASCADE;
    ALTER TABLE grace_period_assignments
        ADD CONSTRAINT grace_period_assignments_conversation_fkey
        FOREIGN KEY (tenant_id, conversation_id) REFERENCES conversation_refs (tenant_id, id)
        ON DELETE CASCADE;
    ALTER TABLE grace_period_assignments
        ADD CONSTRAINT grace_period_assignments_operator_fkey
        FOREIGN KEY (tenant_id, operator_id) REFERENCES operators (tenant_id, id)
        ON DELETE CASCADE;
    ALTER TABLE idempotency_keys
        ADD CONSTRAINT idempotency_keys_tenant_fkey
        FOREIGN KEY (tenant_id) REFERENCES tenants (id) ON DELETE CASCADE;
    ALTER TABLE idempotency_keys
        ADD CONSTRAINT idempotency_keys_operator_fkey
        FOREIGN KEY (tenant_id, operator_id) REFERENCES operators (tenant_id, id)
        ON DELETE CASCADE;
    """)


def downgrade() -> None:
    execute_script("""
    SET LOCAL lock_timeout = '5s';

    ALTER TABLE inboxes DROP CONSTRAINT inboxes_tenant_fkey;
    ALTER TABLE operators DROP CONSTRAINT operators_tenant_fkey;
    ALTER TABLE operator_inbox_subscriptions
        DROP CONSTRAINT operator_inbox_subscriptions_tenant_fkey,
        DROP CONSTRAINT operator_inbox_subscriptions_operator_fkey,
        DROP CONSTRAINT operator_inbox_subscriptions_inbox_fkey;
    ALTER TABLE operator_status
        DROP CONSTRAINT operator_status_tenant_fkey,
        DROP CONSTRAINT operator_status_operator_fkey;
    ALTER TABLE conversation_refs
        DROP CONSTRAINT conversation_refs_tenant_fkey,
        DROP CONSTRAINT conversation_refs_inbox_fkey,
        DROP CONSTRAINT conversation_refs_assigned_operator_fkey;
    ALTER TABLE labels
        DROP CONSTRAINT labels_tenant_fkey,
        DROP CONSTRAINT labels_inbox_fkey,
        DROP CONSTRAINT labels_created_by_fkey;
    ALTER TABLE conversation_labels
        DROP CONSTRAINT conversation_labels_tenant_fkey,
        DROP CONSTRAINT conversation_labels_conversation_fkey,
        DROP CONSTRAINT conversation_labels_label_fkey;
    ALTER TABLE grace_period_assignments
        DROP CONSTRAINT grace_period_assignments_tenant_fkey,
        DROP CONSTRAINT grace_period_assignments_conversation_fkey,
        DROP CONSTRAINT grace_period_assignments_operator_fkey;
    ALTER TABLE idempotency_keys
        DROP CONSTRAINT idempotency_keys_tenant_fkey,
        DROP CONSTRAINT idempotency_keys_operator_fkey;
    """)

    undistribute([*DISTRIBUTED, "tenants"])

    execute_script("""
    DROP INDEX idx_idempotency_keys_expires_at;
    CREATE INDEX idx_idempotency_keys_expires_at ON idempotency_keys (expires_at);
    DROP INDEX idx_grace_operator;
    CREATE INDEX idx_grace_operator ON grace_period_assignments (operator_id);
    DROP INDEX idx_grace_expires;
    CREATE INDEX idx_grace_expires ON grace_period_assignments (expires_at)
        WHERE expires_at IS NOT NULL;
    DROP INDEX idx_conv_labels_label;
    CREATE INDEX idx_conv_labels_label ON conversation_labels (label_id);
    DROP INDEX idx_conv_labels_conversation;
    CREATE INDEX idx_conv_labels_conversation ON conversation_labels (conversation_id);
    DROP INDEX idx_labels_created_by;
    DROP INDEX idx_operator_status_status;
    CREATE INDEX idx_operator_status_status ON operator_status (status);
    DROP INDEX idx_subscriptions_inbox_id;
    CREATE INDEX idx_subscriptions_inbox_id ON operator_inbox_subscriptions (inbox_id);
    DROP INDEX idx_subscriptions_operator_id;
    CREATE INDEX idx_subscriptions_operator_id ON operator_inbox_subscriptions (operator_id);

    DROP INDEX idx_grace_conversation;
    CREATE UNIQUE INDEX idx_grace_conversation ON grace_period_assignments (conversation_id);
    DROP INDEX idx_conv_labels_conv_label;
    CREATE UNIQUE INDEX idx_conv_labels_conv_label
        ON conversation_labels (conversation_id, label_id);
    DROP INDEX idx_labels_inbox_name;
    CREATE UNIQUE INDEX idx_labels_inbox_name ON labels (inbox_id, name);
    ALTER TABLE operator_status DROP CONSTRAINT operator_status_operator_id_key,
        ADD CONSTRAINT operator_status_operator_id_key UNIQUE (operator_id);
    DROP INDEX idx_subscriptions_operator_inbox;
    CREATE UNIQUE INDEX idx_subscriptions_operator_inbox
        ON operator_inbox_subscriptions (operator_id, inbox_id);

    ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_pkey,
        ADD CONSTRAINT idempotency_keys_pkey PRIMARY KEY (id);
    ALTER TABLE grace_period_assignments DROP CONSTRAINT grace_period_assignments_pkey,
        ADD CONSTRAINT grace_period_assignments_pkey PRIMARY KEY (id);
    ALTER TABLE conversation_labels DROP CONSTRAINT conversation_labels_pkey,
        ADD CONSTRAINT conversation_labels_pkey PRIMARY KEY (id);
    ALTER TABLE labels DROP CONSTRAINT labels_pkey,
        ADD CONSTRAINT labels_pkey PRIMARY KEY (id);
    ALTER TABLE conversation_refs DROP CONSTRAINT conversation_refs_pkey,
        ADD CONSTRAINT conversation_refs_pkey PRIMARY KEY (id);
    ALTER TABLE operator_status DROP CONSTRAINT operator_status_pkey,
        ADD CONSTRAINT operator_status_pkey PRIMARY KEY (id);
    ALTER TABLE operator_inbox_subscriptions DROP CONSTRAINT operator_inbox_subscriptions_pkey,
        ADD CONSTRAINT operator_inbox_subscriptions_pkey PRIMARY KEY (id);
    ALTER TABLE operators DROP CONSTRAINT operators_pkey,
        ADD CONSTRAINT operators_pkey PRIMARY KEY (id);
    ALTER TABLE inboxes DROP CONSTRAINT inboxes_pkey,
        ADD CONSTRAINT inboxes_pkey PRIMARY KEY (id),
        ADD CONSTRAINT inboxes_id_tenant_key UNIQUE (id, tenant_id);

    -- The foreign keys of 0001 and 0002, under their original names.
    ALTER TABLE inboxes ADD CONSTRAINT inboxes_tenant_id_fkey
        FOREIGN KEY (tenant_id) REFERENCES tenants (id) ON DELETE CASCADE;
    ALTER TABLE operators ADD CONSTRAINT operators_tenant_id_fkey
        FOREIGN KEY (tenant_id) REFERENCES tenants (id) ON DELETE CASCADE;
    ALTER TABLE operator_inbox_subscriptions
        ADD CONSTRAINT operator_inbox_subscriptions_operator_id_fkey
            FOREIGN KEY (operator_id) REFERENCES operators (id) ON DELETE CASCADE,
        ADD CONSTRAINT operator_inbox_subscriptions_inbox_id_fkey
            FOREIGN KEY (inbox_id) REFERENCES inboxes (id) ON DELETE CASCADE;
    ALTER TABLE operator_status ADD CONSTRAINT operator_status_operator_id_fkey
        FOREIGN KEY (operator_id) REFERENCES operators (id) ON DELETE CASCADE;
    ALTER TABLE conversation_refs
        ADD CONSTRAINT conversation_refs_tenant_id_fkey
            FOREIGN KEY (tenant_id) REFERENCES tenants (id) ON DELETE CASCADE,
        ADD CONSTRAINT conversation_refs_inbox_id_fkey
            FOREIGN KEY (inbox_id) REFERENCES inboxes (id) ON DELETE CASCADE,
        ADD CONSTRAINT conversation_refs_assigned_operator_id_fkey
            FOREIGN KEY (assigned_operator_id) REFERENCES operators (id) ON DELETE SET NULL,
        ADD CONSTRAINT conversation_refs_inbox_same_tenant FOREIGN KEY (inbox_id, tenant_id)
            REFERENCES inboxes (id, tenant_id) ON DELETE CASCADE;
    ALTER TABLE labels
        ADD CONSTRAINT labels_tenant_id_fkey
            FOREIGN KEY (tenant_id) REFERENCES tenants (id) ON DELETE CASCADE,
        ADD CONSTRAINT labels_inbox_id_fkey
            FOREIGN KEY (inbox_id) REFERENCES inboxes (id) ON DELETE CASCADE,
        ADD CONSTRAINT labels_created_by_fkey
            FOREIGN KEY (created_by) REFERENCES operators (id) ON DELETE SET NULL,
        ADD CONSTRAINT labels_inbox_same_tenant FOREIGN KEY (inbox_id, tenant_id)
            REFERENCES inboxes (id, tenant_id) ON DELETE CASCADE;
    ALTER TABLE conversation_labels
        ADD CONSTRAINT conversation_labels_conversation_id_fkey
            FOREIGN KEY (conversation_id) REFERENCES conversation_refs (id) ON DELETE CASCADE,
        ADD CONSTRAINT conversation_labels_label_id_fkey
            FOREIGN KEY (label_id) REFERENCES labels (id) ON DELETE CASCADE;
    ALTER TABLE grace_period_assignments
        ADD CONSTRAINT grace_period_assignments_conversation_id_fkey
            FOREIGN KEY (conversation_id) REFERENCES conversation_refs (id) ON DELETE CASCADE,
        ADD CONSTRAINT grace_period_assignments_operator_id_fkey
            FOREIGN KEY (operator_id) REFERENCES operators (id) ON DELETE CASCADE;
    ALTER TABLE idempotency_keys
        ADD CONSTRAINT idempotency_keys_tenant_id_fkey
            FOREIGN KEY (tenant_id) REFERENCES tenants (id) ON DELETE CASCADE,
        ADD CONSTRAINT idempotency_keys_operator_id_fkey
            FOREIGN KEY (operator_id) REFERENCES operators (id) ON DELETE CASCADE;

    ALTER TABLE grace_period_assignments DROP COLUMN tenant_id;
    ALTER TABLE conversation_labels DROP COLUMN tenant_id;
    ALTER TABLE operator_status DROP COLUMN tenant_id;
    ALTER TABLE operator_inbox_subscriptions DROP COLUMN tenant_id;
    """)
