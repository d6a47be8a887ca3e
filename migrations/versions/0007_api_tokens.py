"""API tokens (AUTH_MODE=token): per-operator bearer credentials, stored only as SHA-256.

Two tables (the reasons are in docs/authentication.md):

- `api_tokens` is the record the token routes list and revoke: tenant-keyed like every
  table, its operator a composite foreign key, so deleting an operator deletes its tokens.
- `api_token_lookup` answers the one question a request asks before its tenant is known:
  "whose token has this hash?". It is keyed by the hash alone (the hash is what finds the
  tenant), carries what authentication needs (tenant, operator, expiry), and holds a row
  only while the token is usable: revoking a token or deleting its operator deletes the
  row in the same transaction. On a distributed database it is a reference table (or one
  distributed by its hash); either way the lookup reads one row on one node.

Revision ID: 0007
Revises: 0005
Create Date: 2026-12-04
"""

from inbox_allocation.db.migrations import execute_script

revision = "0007"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script("""
    -- TEMPORARY until 0006 (which keys operators by (tenant_id, id)): the composite foreign
    -- key below needs a unique index on exactly these columns.
    CREATE UNIQUE INDEX uq_operators_tenant_id_id_tmp ON operators (tenant_id, id);

    CREATE TABLE api_tokens (
        tenant_id uuid NOT NULL,
        id uuid NOT NULL,
        operator_id uuid NOT NULL,
        name varchar(100) NOT NULL,
        token_hash bytea NOT NULL,
        created_at timestamptz NOT NULL,
        expires_at timestamptz,
        last_used_at timestamptz,
        revoked_at timestamptz,
        CONSTRAINT api_tokens_pkey PRIMARY KEY (tenant_id, id),
        CONSTRAINT fk_api_tokens_operator FOREIGN KEY (tenant_id, operator_id)
            REFERENCES operators (tenant_id, id) ON DELETE CASCADE,
        CONSTRAINT uq_api_tokens_hash UNIQUE (tenant_id, token_hash),
        CONSTRAINT api_tokens_hash_is_sha256 CHECK (octet_length(token_hash) = 32)
    );
    CREATE INDEX idx_api_tokens_operator ON api_tokens (tenant_id, operator_id, created_at);

    CREATE TABLE api_token_lookup (
        token_hash bytea NOT NULL,
        tenant_id uuid NOT NULL,
        token_id uuid NOT NULL,
        operator_id uuid NOT NULL,
        expires_at timestamptz,
        CONSTRAINT api_token_lookup_pkey PRIMARY KEY (token_hash),
        CONSTRAINT api_token_lookup_hash_is_sha256 CHECK (octet_length(token_hash) = 32)
    );
    CREATE INDEX idx_api_token_lookup_operator ON api_token_lookup (tenant_id, operator_id);

    COMMENT ON TABLE api_tokens IS
        'API tokens of operators (AUTH_MODE=token); the secret itself is never stored';
    COMMENT ON COLUMN api_tokens.token_hash IS 'SHA-256 of the whole token text (iat_…)';
    COMMENT ON COLUMN api_tokens.expires_at IS 'NULL = never expires';
    COMMENT ON COLUMN api_tokens.last_used_at IS
        'Last authenticated use, written at most about once a minute per token';
    COMMENT ON COLUMN api_tokens.revoked_at IS 'Set by DELETE …/tokens/{id}; the token is dead';
    COMMENT ON TABLE api_token_lookup IS
        'Usable tokens by hash: the one row a request reads to authenticate';
    """)


def downgrade() -> None:
    execute_script("""
    DROP TABLE api_token_lookup;
    DROP TABLE api_tokens;
    DROP INDEX uq_operators_tenant_id_id_tmp;  -- TEMPORARY until 0006
    """)
