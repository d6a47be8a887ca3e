"""Event positions and write checks taken on the node that stores the tenant's rows.

An event's position is (xid, seq), and a reader delivers only events whose xid is below the
xmin of its snapshot (the watermark). Both numbers are a node's own: on Citus every worker
has its own transaction ids, so the xid stored with a tenant's event and the watermark it is
compared with must come from the same node — the worker holding the tenant's shards — never
from the coordinator. Citus evaluates column defaults such as `pg_current_xact_id()` of a
distributed INSERT on the coordinator, so:

- `events.xid` and `events.seq` lose their defaults and are set by a BEFORE INSERT trigger,
  which runs where the row is stored (on Citus: on the shard). `seq` numbers the rows of one
  transaction on that node (1, 2, …), kept in a transaction-local setting: with the xid it is
  unique and orders a transaction's events, and it needs no sequence shared between nodes.
- `event_watermark(tenant_id)` returns the watermark of the node storing that tenant's
  events. On Citus it is a distributed function colocated with `events` and distributed by
  its argument, so `SELECT event_watermark($1)` (outside a transaction block) is delegated
  to that worker. It is PL/pgSQL so the planner cannot inline it away on the coordinator.

- `write_event(...)` inserts one event. The event-writing statements call it from a CTE
  instead of an `INSERT … SELECT` in a CTE, which Citus cannot push down: it would split the
  whole statement into one step per CTE, each a round trip from the coordinator to the
  worker (and, for /allocate, fail on the intermediate results). A function call is pushed
  down with the rest, and runs on the worker inside the statement's own transaction there;
  it inserts into the tenant's local shard of `events` (a statement running on a shard may
  not start another distributed statement), or, where that shard is not local (plain
  PostgreSQL, or a plan that runs the CTE on the coordinator), into `events`.

- `transaction_wrote(anchor)`: has this transaction written anything on this node? The
  idempotency bookkeeping marks a reservation executed in the same transaction as the
  request's writes, only if there were writes. Citus evaluates a function call without
  column arguments (here `pg_current_xact_id_if_assigned()`) on the coordinator, whose own
  transaction writes nothing when the rows live on a worker; called with a column of the row
  it guards, it runs where that row is stored, in the transaction that made the writes.

On plain PostgreSQL the trigger and the functions do what the defaults, the inline watermark
and the `INSERT … SELECT` did: there is one node.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04
"""

from alembic import op

from inbox_allocation.db.migrations import citus_installed, execute_script

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    citus = citus_installed()
    if citus:
        # Creating a trigger on a distributed table; it then runs on the shards.
        op.execute("SET LOCAL citus.enable_unsafe_triggers = on")
    execute_script("""
    SET LOCAL lock_timeout = '5s';

    CREATE FUNCTION events_position() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        n bigint := coalesce(
            nullif(current_setting('inbox_allocation.event_seq', true), '')::bigint, 0) + 1;
    BEGIN
        NEW.xid := pg_current_xact_id()::text::bigint;
        NEW.seq := n;
        PERFORM set_config('inbox_allocation.event_seq', n::text, true);
        RETURN NEW;
    END
    $$;

    ALTER TABLE events ALTER COLUMN xid DROP DEFAULT, ALTER COLUMN seq DROP DEFAULT;
    DROP SEQUENCE events_seq;
    CREATE TRIGGER events_position BEFORE INSERT ON events
        FOR EACH ROW EXECUTE FUNCTION events_position();

    CREATE FUNCTION write_event(
        tenant uuid, event_type text, inbox uuid, from_inbox uuid, operator uuid, payload jsonb
    ) RETURNS void LANGUAGE plpgsql VOLATILE AS $$
    DECLARE
        shard text;
    BEGIN
        IF to_regproc('get_shard_id_for_distribution_column') IS NOT NULL THEN
            -- Only reached on Citus, where these functions exist.
            shard := shard_name('events'::regclass,
                                get_shard_id_for_distribution_column('events', tenant));
            IF to_regclass(shard) IS NOT NULL THEN
                EXECUTE format('INSERT INTO %s (tenant_id, type, inbox_id, from_inbox_id,'
                               ' operator_id, data) VALUES ($1, $2, $3, $4, $5, $6)', shard)
                    USING tenant, event_type, inbox, from_inbox, operator, payload;
                RETURN;
            END IF;
        END IF;
        INSERT INTO events (tenant_id, type, inbox_id, from_inbox_id, operator_id, data)
        VALUES (tenant, event_type, inbox, from_inbox, operator, payload);
    END
    $$;

    CREATE FUNCTION transaction_wrote(anchor uuid) RETURNS boolean LANGUAGE plpgsql VOLATILE
    AS $$
    BEGIN
        RETURN pg_current_xact_id_if_assigned() IS NOT NULL;
    END
    $$;

    CREATE FUNCTION event_watermark(tenant uuid) RETURNS bigint LANGUAGE plpgsql STABLE AS $$
    BEGIN
        RETURN pg_snapshot_xmin(pg_current_snapshot())::text::bigint;
    END
    $$;
    """)
    if citus:
        op.execute(
            "SELECT create_distributed_function('event_watermark(uuid)', 'tenant', "
            "colocate_with := 'events')"
        )


def downgrade() -> None:
    # seq restarts: it only has to be unique together with the xid, and every transaction
    # from now on has a new xid.
    execute_script("""
    DROP FUNCTION event_watermark(uuid);
    DROP FUNCTION write_event(uuid, text, uuid, uuid, uuid, jsonb);
    DROP FUNCTION transaction_wrote(uuid);
    DROP TRIGGER events_position ON events;
    DROP FUNCTION events_position();
    CREATE SEQUENCE events_seq;
    ALTER TABLE events
        ALTER COLUMN xid SET DEFAULT (pg_current_xact_id()::text::bigint),
        ALTER COLUMN seq SET DEFAULT nextval('events_seq');
    """)
