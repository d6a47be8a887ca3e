"""API tokens (AUTH_MODE=token): per-operator bearer credentials, stored only as SHA-256.

Two tables (the reasons are in docs/authentication.md):

- `api_tokens` is the record the token routes list and revoke: tenant-keyed like every
  table, its operator a composite foreign key, so deleting an operator deletes its tokens.
- `api_token_lookup` answers the one question a request asks before its tenant is known:
  "whose token has this hash?". It is keyed by the hash alone (the hash is what finds the
  tenant), carries what authentication needs (tenant, operator, expiry), and holds a row
  only while the token is usable: revoking a token or deleting its operator deletes the
  row in the same transaction. On Citus it is a reference table (a copy on every node), so
  the lookup reads one local row wherever the request lands; `api_tokens` is distributed by
  tenant_id with the other tenant tables, its foreign keys added after distribution.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from inbox_allocation.db.migrations import distribute_by_tenant, execute_script

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script("""
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

    distribute_by_tenant(["api_tokens"], reference=("api_token_lookup",))

    # Foreign keys after distribution (Citus refuses to distribute a table that has foreign
    # keys to local tables), one per ALTER TABLE (Citus refuses several ADD CONSTRAINT
    # subcommands in one command on a distributed table). The operator key is also what
    # deletes an operator's token records with it. The lookup (a reference table on Citus,
    # like tenants) can only reference tenants: a deleted tenant takes its lookup rows along.
    execute_script("""
    ALTER TABLE api_tokens
        ADD CONSTRAINT api_tokens_tenant_fkey
        FOREIGN KEY (tenant_id) REFERENCES tenants (id) ON DELETE CASCADE;
    ALTER TABLE api_token_lookup
        ADD CONSTRAINT api_token_lookup_tenant_fkey
        FOREIGN KEY (tenant_id) REFERENCES tenants (id) ON DELETE CASCADE;
    ALTER TABLE api_tokens
        ADD CONSTRAINT api_tokens_operator_fkey
        FOREIGN KEY (tenant_id, operator_id) REFERENCES operators (tenant_id, id)
        ON DELETE CASCADE;
    """)


def downgrade() -> None:
    execute_script("""
    DROP TABLE api_token_lookup;
    DROP TABLE api_tokens;
    """)
