"""Versioned weights: a weights change no longer rewrites every conversation in one statement.

`tenants.weights_version` goes up by one with every change of the priority weights;
`conversation_refs.weights_version` is the version the row's priority keys were computed
with (set by the key trigger of migration 0003, which now reads the version together with
the weights). PUT /tenant/weights only updates the tenant row; the priority-keys worker
(services/priority_keys.py) then recomputes the rows of older versions in small batches,
skipping locked rows, until none is left. A conversation inserted while the change was
being committed (its trigger read the old weights) carries the old version, so the worker
finds it too. The index lets the worker find the rows of old versions without reading the
tenant's other rows.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from alembic import op

from inbox_allocation.db.migrations import execute_script

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_KEYS_FUNCTION = """
CREATE OR REPLACE FUNCTION conversation_priority_keys() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    alpha double precision;
    beta double precision;
    version bigint;
    waited double precision;
BEGIN
    SELECT t.priority_weight_alpha, t.priority_weight_beta, t.weights_version
    INTO alpha, beta, version
    FROM tenants t WHERE t.id = NEW.tenant_id;
    NEW.weights_version := version;
    NEW.priority_aged_key :=
        alpha * LEAST(log((NEW.message_count + 1)::double precision) / 3, 1);
    NEW.priority_young_key := NEW.priority_aged_key
        - beta * extract(epoch FROM NEW.last_message_at)::double precision / 86400;
    waited := extract(epoch FROM now() - NEW.last_message_at)::double precision;
    NEW.priority_score := round(
        (NEW.priority_aged_key + beta * LEAST(waited / 86400, 1))::numeric, 6);
    RETURN NEW;
END $$
"""

_KEYS_FUNCTION_0003 = """
CREATE OR REPLACE FUNCTION conversation_priority_keys() RETURNS trigger
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
END $$
"""


def upgrade() -> None:
    execute_script(f"""
    SET LOCAL lock_timeout = '5s';
    -- A constant default: no table rewrite, every existing row is of version 1.
    ALTER TABLE tenants ADD COLUMN weights_version bigint NOT NULL DEFAULT 1;
    COMMENT ON COLUMN tenants.weights_version IS
        'Goes up by one with every change of the priority weights';
    ALTER TABLE conversation_refs ADD COLUMN weights_version bigint NOT NULL DEFAULT 1;
    COMMENT ON COLUMN conversation_refs.weights_version IS
        'The tenant weights version the priority keys were computed with';
    {_KEYS_FUNCTION};
    """)
    # Built without blocking writes on a large table (outside the migration's transaction).
    with op.get_context().autocommit_block():
        op.execute(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_conversations_weights_version "
            "ON conversation_refs (tenant_id, weights_version)"
        )


def downgrade() -> None:
    execute_script(f"""
    SET LOCAL lock_timeout = '5s';
    DROP INDEX IF EXISTS idx_conversations_weights_version;
    {_KEYS_FUNCTION_0003};
    ALTER TABLE conversation_refs DROP COLUMN IF EXISTS weights_version;
    ALTER TABLE tenants DROP COLUMN IF EXISTS weights_version;
    """)
