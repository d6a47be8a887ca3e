"""Idempotency reservations that say whether their request is still running and whether it
has written anything.

- `heartbeat_at`: the request holding a reservation refreshes it every few seconds while it
  runs, so a duplicate takes a reservation over only when its owner stopped (its process
  died), never because the request is slow.
- `executed`: set in the same transaction as the request's writes. A request that failed
  after its transaction committed (e.g. the COMMIT's reply was lost) therefore keeps its key,
  and its retry is told so instead of running a second time.

Both are new columns with constant defaults: no table rewrite, a brief lock only.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

from inbox_allocation.db.migrations import execute_script

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script("""
    SET LOCAL lock_timeout = '5s';
    ALTER TABLE idempotency_keys
        ADD COLUMN heartbeat_at timestamptz NOT NULL DEFAULT now(),
        ADD COLUMN executed boolean NOT NULL DEFAULT false;
    COMMENT ON COLUMN idempotency_keys.heartbeat_at IS
        'Refreshed while the owning request runs; a stale one means its owner stopped';
    COMMENT ON COLUMN idempotency_keys.executed IS
        'The owning request committed a write (set in its own transaction)';
    """)


def downgrade() -> None:
    execute_script("""
    ALTER TABLE idempotency_keys DROP COLUMN heartbeat_at, DROP COLUMN executed;
    """)
