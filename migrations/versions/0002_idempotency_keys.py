"""Idempotency keys, scoped per (tenant, operator, method, path, key).

Differences from the Go table, each fixing one of its defects (docs/decisions.md#idempotency):
the scope includes operator, method and path; a row is reserved *before* the request runs
(response columns NULL while in progress) so a concurrent duplicate waits instead of running
twice; the response body is stored as bytes so a replay is byte-identical.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from alembic import op

from inbox_allocation.db.migrations import execute_script

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script("""
    CREATE TABLE idempotency_keys (
        id uuid NOT NULL DEFAULT gen_random_uuid(),
        key varchar(255) NOT NULL,
        tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
        operator_id uuid NOT NULL REFERENCES operators (id) ON DELETE CASCADE,
        endpoint varchar(255) NOT NULL,
        method varchar(10) NOT NULL,
        request_hash varchar(64) NOT NULL,
        response_status int,
        response_body bytea,
        created_at timestamptz NOT NULL DEFAULT now(),
        expires_at timestamptz NOT NULL,
        CONSTRAINT idempotency_keys_pkey PRIMARY KEY (id),
        CONSTRAINT uq_idempotency_scope UNIQUE (tenant_id, operator_id, method, endpoint, key),
        CONSTRAINT idempotency_keys_response_complete CHECK (
            (response_status IS NULL) = (response_body IS NULL))
    );
    CREATE INDEX idx_idempotency_keys_expires_at ON idempotency_keys (expires_at);

    COMMENT ON TABLE idempotency_keys IS
        'Results of mutating requests sent with an Idempotency-Key, replayed on retry';
    COMMENT ON COLUMN idempotency_keys.key IS 'Client-chosen key (Idempotency-Key header)';
    COMMENT ON COLUMN idempotency_keys.operator_id IS 'Operator (X-Operator-ID) that sent it';
    COMMENT ON COLUMN idempotency_keys.endpoint IS 'Request path';
    COMMENT ON COLUMN idempotency_keys.method IS 'HTTP method';
    COMMENT ON COLUMN idempotency_keys.request_hash IS
        'SHA-256 hex of method, path and canonical JSON body';
    COMMENT ON COLUMN idempotency_keys.response_status IS
        'HTTP status of the stored result; NULL while the first request is in progress';
    COMMENT ON COLUMN idempotency_keys.response_body IS 'Response body bytes, replayed verbatim';
    COMMENT ON COLUMN idempotency_keys.created_at IS
        'When the key was reserved (a stale in-progress reservation can be taken over)';
    COMMENT ON COLUMN idempotency_keys.expires_at IS 'After this the key is forgotten';
    """)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS idempotency_keys")
