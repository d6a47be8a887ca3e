"""Initial schema: the Go service's tables, enums, constraints and indexes.

Names are kept so existing dashboards and scripts still find them. Additions, for integrity
the original left to luck: composite foreign keys tie a conversation's and a label's inbox to
the same tenant, weights are range-checked, and a conversation's state and assignee cannot
disagree (ALLOCATED ⇔ operator set; QUEUED ⇒ no operator).

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from inbox_allocation.db.migrations import execute_script

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script("""
    CREATE TYPE operator_role AS ENUM ('OPERATOR', 'MANAGER', 'ADMIN');
    CREATE TYPE operator_status_type AS ENUM ('AVAILABLE', 'OFFLINE');
    CREATE TYPE conversation_state AS ENUM ('QUEUED', 'ALLOCATED', 'RESOLVED');
    CREATE TYPE grace_period_reason AS ENUM ('OFFLINE', 'MANUAL');

    CREATE TABLE tenants (
        id uuid NOT NULL DEFAULT gen_random_uuid(),
        name varchar(255) NOT NULL,
        priority_weight_alpha numeric(5,4) NOT NULL DEFAULT 0.5,
        priority_weight_beta numeric(5,4) NOT NULL DEFAULT 0.5,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        updated_by uuid,
        CONSTRAINT tenants_pkey PRIMARY KEY (id),
        CONSTRAINT tenants_weights_range CHECK (
            priority_weight_alpha BETWEEN 0 AND 1 AND priority_weight_beta BETWEEN 0 AND 1)
    );
    CREATE UNIQUE INDEX idx_tenants_name ON tenants (name);

    CREATE TABLE inboxes (
        id uuid NOT NULL DEFAULT gen_random_uuid(),
        tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
        phone_number varchar(20) NOT NULL,
        display_name varchar(255) NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT inboxes_pkey PRIMARY KEY (id),
        -- target of the composite foreign keys below
        CONSTRAINT inboxes_id_tenant_key UNIQUE (id, tenant_id)
    );
    CREATE UNIQUE INDEX idx_inboxes_tenant_phone ON inboxes (tenant_id, phone_number);
    CREATE INDEX idx_inboxes_tenant_id ON inboxes (tenant_id);

    CREATE TABLE operators (
        id uuid NOT NULL DEFAULT gen_random_uuid(),
        tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
        role operator_role NOT NULL DEFAULT 'OPERATOR',
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT operators_pkey PRIMARY KEY (id)
    );
    CREATE INDEX idx_operators_tenant_id ON operators (tenant_id);
    CREATE INDEX idx_operators_tenant_role ON operators (tenant_id, role);

    CREATE TABLE operator_inbox_subscriptions (
        id uuid NOT NULL DEFAULT gen_random_uuid(),
        operator_id uuid NOT NULL REFERENCES operators (id) ON DELETE CASCADE,
        inbox_id uuid NOT NULL REFERENCES inboxes (id) ON DELETE CASCADE,
        created_at timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT operator_inbox_subscriptions_pkey PRIMARY KEY (id)
    );
    CREATE UNIQUE INDEX idx_subscriptions_operator_inbox
        ON operator_inbox_subscriptions (operator_id, inbox_id);
    CREATE INDEX idx_subscriptions_operator_id ON operator_inbox_subscriptions (operator_id);
    CREATE INDEX idx_subscriptions_inbox_id ON operator_inbox_subscriptions (inbox_id);

    CREATE TABLE operator_status (
        id uuid NOT NULL DEFAULT gen_random_uuid(),
        operator_id uuid NOT NULL REFERENCES operators (id) ON DELETE CASCADE,
        status operator_status_type NOT NULL DEFAULT 'OFFLINE',
        last_status_change_at timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT operator_status_pkey PRIMARY KEY (id),
        CONSTRAINT operator_status_operator_id_key UNIQUE (operator_id)
    );
    CREATE INDEX idx_operator_status_status ON operator_status (status);

    CREATE TABLE conversation_refs (
        id uuid NOT NULL DEFAULT gen_random_uuid(),
        tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
        inbox_id uuid NOT NULL REFERENCES inboxes (id) ON DELETE CASCADE,
        external_conversation_id varchar(255) NOT NULL,
        customer_phone_number varchar(20) NOT NULL,
        state conversation_state NOT NULL DEFAULT 'QUEUED',
        assigned_operator_id uuid REFERENCES operators (id) ON DELETE SET NULL,
        last_message_at timestamptz NOT NULL DEFAULT now(),
        message_count integer NOT NULL DEFAULT 0,
        priority_score numeric(10,6) NOT NULL DEFAULT 0,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        resolved_at timestamptz,
        CONSTRAINT conversation_refs_pkey PRIMARY KEY (id),
        CONSTRAINT conversation_refs_inbox_same_tenant FOREIGN KEY (inbox_id, tenant_id)
            REFERENCES inboxes (id, tenant_id) ON DELETE CASCADE,
        CONSTRAINT conversation_refs_assignment_matches_state CHECK (
            (state <> 'ALLOCATED' OR assigned_operator_id IS NOT NULL)
            AND (state <> 'QUEUED' OR assigned_operator_id IS NULL))
    );
    CREATE INDEX idx_conversations_allocation
        ON conversation_refs (tenant_id, inbox_id, state, priority_score DESC, last_message_at ASC)
        WHERE state = 'QUEUED';
    CREATE INDEX idx_conversations_tenant_state ON conversation_refs (tenant_id, state);
    CREATE INDEX idx_conversations_operator
        ON conversation_refs (tenant_id, assigned_operator_id, state)
        WHERE assigned_operator_id IS NOT NULL;
    CREATE INDEX idx_conversations_phone ON conversation_refs (tenant_id, customer_phone_number);
    CREATE UNIQUE INDEX idx_conversations_external_id
        ON conversation_refs (tenant_id, external_conversation_id);

    CREATE TABLE labels (
        id uuid NOT NULL DEFAULT gen_random_uuid(),
        tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
        inbox_id uuid NOT NULL REFERENCES inboxes (id) ON DELETE CASCADE,
        name varchar(100) NOT NULL,
        color varchar(7),
        created_by uuid REFERENCES operators (id) ON DELETE SET NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT labels_pkey PRIMARY KEY (id),
        CONSTRAINT labels_inbox_same_tenant FOREIGN KEY (inbox_id, tenant_id)
            REFERENCES inboxes (id, tenant_id) ON DELETE CASCADE
    );
    CREATE UNIQUE INDEX idx_labels_inbox_name ON labels (inbox_id, name);
    CREATE INDEX idx_labels_inbox_id ON labels (tenant_id, inbox_id);

    CREATE TABLE conversation_labels (
        id uuid NOT NULL DEFAULT gen_random_uuid(),
        conversation_id uuid NOT NULL REFERENCES conversation_refs (id) ON DELETE CASCADE,
        label_id uuid NOT NULL REFERENCES labels (id) ON DELETE CASCADE,
        created_at timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT conversation_labels_pkey PRIMARY KEY (id)
    );
    CREATE UNIQUE INDEX idx_conv_labels_conv_label
        ON conversation_labels (conversation_id, label_id);
    CREATE INDEX idx_conv_labels_conversation ON conversation_labels (conversation_id);
    CREATE INDEX idx_conv_labels_label ON conversation_labels (label_id);

    CREATE TABLE grace_period_assignments (
        id uuid NOT NULL DEFAULT gen_random_uuid(),
        conversation_id uuid NOT NULL REFERENCES conversation_refs (id) ON DELETE CASCADE,
        operator_id uuid NOT NULL REFERENCES operators (id) ON DELETE CASCADE,
        expires_at timestamptz NOT NULL,
        reason grace_period_reason NOT NULL DEFAULT 'OFFLINE',
        created_at timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT grace_period_assignments_pkey PRIMARY KEY (id)
    );
    CREATE UNIQUE INDEX idx_grace_conversation ON grace_period_assignments (conversation_id);
    CREATE INDEX idx_grace_expires ON grace_period_assignments (expires_at)
        WHERE expires_at IS NOT NULL;
    CREATE INDEX idx_grace_operator ON grace_period_assignments (operator_id);
    """)


def downgrade() -> None:
    execute_script("""
    DROP TABLE IF EXISTS grace_period_assignments;
    DROP TABLE IF EXISTS conversation_labels;
    DROP TABLE IF EXISTS labels;
    DROP TABLE IF EXISTS conversation_refs;
    DROP TABLE IF EXISTS operator_status;
    DROP TABLE IF EXISTS operator_inbox_subscriptions;
    DROP TABLE IF EXISTS operators;
    DROP TABLE IF EXISTS inboxes;
    DROP TABLE IF EXISTS tenants;
    DROP TYPE IF EXISTS grace_period_reason;
    DROP TYPE IF EXISTS conversation_state;
    DROP TYPE IF EXISTS operator_status_type;
    DROP TYPE IF EXISTS operator_role;
    """)
