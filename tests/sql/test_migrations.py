"""Migrations: every table, enum and index of the schema; down and up again cleanly; the
tenant-keyed schema of 0006, reached from a database full of rows and left again."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import pytest
from sqlalchemy.exc import DBAPIError

from inbox_allocation.db import migrations
from inbox_allocation.db.launcher import EmbeddedPostgres
from inbox_allocation.db.seed import seed_demo_data

pytestmark = pytest.mark.no_db

CONTRACT_TABLES = {
    "tenants", "inboxes", "operators", "operator_inbox_subscriptions", "operator_status",
    "conversation_refs", "labels", "conversation_labels", "grace_period_assignments",
    "idempotency_keys",
}  # fmt: skip
CONTRACT_INDEXES = {
    "tenants_pkey", "idx_tenants_name", "idx_inboxes_tenant_phone", "idx_inboxes_tenant_id",
    "idx_operators_tenant_id", "idx_operators_tenant_role", "idx_subscriptions_operator_inbox",
    "idx_subscriptions_operator_id", "idx_subscriptions_inbox_id", "idx_operator_status_status",
    "operator_status_operator_id_key", "idx_conversations_allocation",
    "idx_conversations_tenant_state", "idx_conversations_operator", "idx_conversations_phone",
    "idx_conversations_external_id", "idx_labels_inbox_name", "idx_labels_inbox_id",
    "idx_conv_labels_conv_label", "idx_conv_labels_conversation", "idx_conv_labels_label",
    "idx_grace_conversation", "idx_grace_expires", "idx_grace_operator",
    "idx_idempotency_keys_expires_at", "uq_idempotency_scope",
}  # fmt: skip
# Ours beyond the contract: live priority and lists (0003), queue age (0004), aged flag (0005).
ROUTING_INDEXES = {
    "idx_conversations_allocation_aged", "idx_conversations_queue_age",
    "idx_conversations_tenant_recent", "idx_conversations_inbox_recent",
}  # fmt: skip
CONTRACT_ENUMS = {"operator_role", "operator_status_type", "conversation_state",
                  "grace_period_reason"}  # fmt: skip


async def _schema(dsn: str) -> tuple[set[str], set[str], set[str]]:
    conn = await asyncpg.connect(dsn)
    try:
        tables = {r[0] for r in await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}  # fmt: skip
        indexes = {r[0] for r in await conn.fetch(
            "SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")}  # fmt: skip
        enums = {r[0] for r in await conn.fetch(
            "SELECT typname FROM pg_type WHERE typtype = 'e'")}  # fmt: skip
    finally:
        await conn.close()
    return tables - {"alembic_version"}, indexes, enums


async def test_upgrade_downgrade_upgrade(pg_server: EmbeddedPostgres) -> None:
    pg_server.run_sql("DROP DATABASE IF EXISTS migration_roundtrip")
    pg_server.run_sql("CREATE DATABASE migration_roundtrip")
    dsn = pg_server.dsn.rsplit("/", 1)[0] + "/migration_roundtrip"

    migrations.upgrade(dsn)
    tables, indexes, enums = await _schema(dsn)
    assert tables >= CONTRACT_TABLES
    assert indexes >= CONTRACT_INDEXES | ROUTING_INDEXES
    assert enums >= CONTRACT_ENUMS

    migrations.downgrade(dsn)
    tables, _, enums = await _schema(dsn)
    assert tables == set()
    assert enums == set()

    migrations.upgrade(dsn)
    tables, indexes, enums = await _schema(dsn)
    assert tables >= CONTRACT_TABLES
    assert indexes >= CONTRACT_INDEXES


async def test_aged_flag_migration_flags_the_queue_it_finds(pg_server: EmbeddedPostgres) -> None:
    """0005 on a database already at 0004 (deployed before it): queued conversations that
    waited past 24 h 5 min come out flagged, the rest not; downgrading restores 0004."""
    pg_server.run_sql("DROP DATABASE IF EXISTS migration_aged_flag")
    pg_server.run_sql("CREATE DATABASE migration_aged_flag")
    dsn = pg_server.dsn.rsplit("/", 1)[0] + "/migration_aged_flag"
    migrations.upgrade(dsn, "0004")
    conn = await asyncpg.connect(dsn)
    try:
        tenant = await conn.fetchval("INSERT INTO tenants (name) VALUES ('t') RETURNING id")
        inbox = await conn.fetchval(
            "INSERT INTO inboxes (tenant_id, phone_number, display_name) "
            "VALUES ($1, '+15550001111', 'i') RETURNING id",
            tenant,
        )
        for external_id, state, waited in [
            ("old-queued", "QUEUED", "25 hours"),
            ("young-queued", "QUEUED", "23 hours"),
            ("old-resolved", "RESOLVED", "25 hours"),
        ]:
            await conn.execute(
                "INSERT INTO conversation_refs (tenant_id, inbox_id, external_conversation_id, "
                "customer_phone_number, state, last_message_at) "
                "VALUES ($1, $2, $3, '+15550002222', $4, now() - $5::text::interval)",
                tenant, inbox, external_id, state, waited,
            )  # fmt: skip

        migrations.upgrade(dsn)
        rows = await conn.fetch("SELECT external_conversation_id, aged FROM conversation_refs")
        flags = {row["external_conversation_id"]: row["aged"] for row in rows}
        assert flags == {"old-queued": True, "young-queued": False, "old-resolved": False}

        migrations.downgrade(dsn, "0004")
        _, indexes, _ = await _schema(dsn)
        assert "idx_conversations_queue_age" in indexes
        columns = {r[0] for r in await conn.fetch(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = 'conversation_refs'")}  # fmt: skip
        assert "aged" not in columns
    finally:
        await conn.close()


def test_script_splitting_respects_strings_comments_and_bodies() -> None:
    script = """
    CREATE TABLE a (x int); -- trailing; comment
    COMMENT ON TABLE a IS 'semi; colon and ''quote;''';
    CREATE FUNCTION f() RETURNS int AS $$ BEGIN PERFORM 1; RETURN 2; END $$ LANGUAGE plpgsql;
    """
    assert migrations.split_statements(script) == [
        "CREATE TABLE a (x int)",
        "COMMENT ON TABLE a IS 'semi; colon and ''quote;'''",
        "CREATE FUNCTION f() RETURNS int AS $$ BEGIN PERFORM 1; RETURN 2; END $$ LANGUAGE plpgsql",
    ]


# ---- 0006: tenant-keyed schema -------------------------------------------------------------

TENANT_KEYED = (CONTRACT_TABLES - {"tenants"}) | {"api_tokens"}
# Keyed by what it looks up, not by tenant: the token hash finds the tenant (0007; a
# reference table on Citus, like tenants).
KEYED_BY_LOOKUP = {"tenants", "api_token_lookup"}
# The tables 0006 itself keys (later revisions add their own).
AT_0006 = TENANT_KEYED - {"api_tokens"}
# Tables that got their tenant_id in 0006, with the parent it was copied from.
BACKFILLED = {
    "operator_inbox_subscriptions": ("operators", "operator_id"),
    "operator_status": ("operators", "operator_id"),
    "conversation_labels": ("conversation_refs", "conversation_id"),
    "grace_period_assignments": ("conversation_refs", "conversation_id"),
}


def _fresh_database(pg_server: EmbeddedPostgres, name: str) -> str:
    pg_server.run_sql(f"DROP DATABASE IF EXISTS {name}")
    pg_server.run_sql(f"CREATE DATABASE {name}")
    return pg_server.dsn.rsplit("/", 1)[0] + "/" + name


async def _catalog(conn: asyncpg.Connection) -> dict[str, list[tuple[Any, ...]]]:
    """Columns, constraints, indexes and triggers of the public schema."""
    queries = {
        "columns": "SELECT table_name, column_name, data_type, is_nullable, column_default "
        "FROM information_schema.columns WHERE table_schema = 'public' "
        "ORDER BY table_name, ordinal_position",
        "constraints": "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) "
        "FROM pg_constraint WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2",
        "indexes": "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' "
        "ORDER BY 1",
        "triggers": "SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger "
        "WHERE NOT tgisinternal ORDER BY 1",
    }
    return {name: [tuple(r) for r in await conn.fetch(query)] for name, query in queries.items()}


async def _rows(conn: asyncpg.Connection) -> dict[str, list[str]]:
    """Every row of every table (as JSON, without the tenant_id that 0006 adds)."""
    rows = {}
    for table in sorted(CONTRACT_TABLES):
        drop = "tenant_id" if table in BACKFILLED else ""
        records = await conn.fetch(f"SELECT to_jsonb(x) - '{drop}' AS row FROM {table} x")
        rows[table] = sorted(json.dumps(json.loads(r["row"]), sort_keys=True) for r in records)
    return rows


# Rows of every kind written on the 0005 schema, beside the seed data: a third tenant with
# all of them, and more subscriptions, label attachments and grace rows in Acme.
LIVE_ROWS_0005 = """
INSERT INTO tenants (id, name) VALUES ('10000000-0000-0000-0000-0000000000aa', 'Migrated Co');
INSERT INTO inboxes (id, tenant_id, phone_number, display_name) VALUES
    ('20000000-0000-0000-0000-0000000000aa', '10000000-0000-0000-0000-0000000000aa',
     '+15550009999', 'Migrated inbox');
INSERT INTO operators (id, tenant_id, role) VALUES
    ('30000000-0000-0000-0000-0000000000aa', '10000000-0000-0000-0000-0000000000aa', 'ADMIN'),
    ('30000000-0000-0000-0000-0000000000bb', '10000000-0000-0000-0000-0000000000aa', 'OPERATOR');
INSERT INTO operator_status (operator_id, status) VALUES
    ('30000000-0000-0000-0000-0000000000aa', 'AVAILABLE'),
    ('30000000-0000-0000-0000-0000000000bb', 'OFFLINE');
INSERT INTO operator_inbox_subscriptions (operator_id, inbox_id) VALUES
    ('30000000-0000-0000-0000-0000000000aa', '20000000-0000-0000-0000-0000000000aa'),
    ('30000000-0000-0000-0000-0000000000bb', '20000000-0000-0000-0000-0000000000aa'),
    ('30000000-0000-0000-0000-000000000004', '20000000-0000-0000-0000-000000000003');
INSERT INTO conversation_refs (id, tenant_id, inbox_id, external_conversation_id,
                               customer_phone_number, state, assigned_operator_id,
                               message_count, last_message_at, resolved_at) VALUES
    ('70000000-0000-0000-0000-0000000000aa', '10000000-0000-0000-0000-0000000000aa',
     '20000000-0000-0000-0000-0000000000aa', 'm-queued', '+15550000001', 'QUEUED', NULL, 3,
     now() - interval '30 hours', NULL),
    ('70000000-0000-0000-0000-0000000000bb', '10000000-0000-0000-0000-0000000000aa',
     '20000000-0000-0000-0000-0000000000aa', 'm-allocated', '+15550000002', 'ALLOCATED',
     '30000000-0000-0000-0000-0000000000bb', 7, now() - interval '1 hour', NULL),
    ('70000000-0000-0000-0000-0000000000cc', '10000000-0000-0000-0000-0000000000aa',
     '20000000-0000-0000-0000-0000000000aa', 'm-resolved', '+15550000003', 'RESOLVED',
     '30000000-0000-0000-0000-0000000000aa', 1, now() - interval '2 days', now());
INSERT INTO labels (id, tenant_id, inbox_id, name, color, created_by) VALUES
    ('60000000-0000-0000-0000-0000000000aa', '10000000-0000-0000-0000-0000000000aa',
     '20000000-0000-0000-0000-0000000000aa', 'Migrated', '#123456',
     '30000000-0000-0000-0000-0000000000aa');
INSERT INTO conversation_labels (conversation_id, label_id) VALUES
    ('70000000-0000-0000-0000-0000000000aa', '60000000-0000-0000-0000-0000000000aa'),
    ('70000000-0000-0000-0000-0000000000cc', '60000000-0000-0000-0000-0000000000aa'),
    ('70000000-0000-0000-0000-000000000003', '60000000-0000-0000-0000-000000000002');
INSERT INTO grace_period_assignments (conversation_id, operator_id, expires_at) VALUES
    ('70000000-0000-0000-0000-0000000000bb', '30000000-0000-0000-0000-0000000000bb',
     now() + interval '5 minutes'),
    ('70000000-0000-0000-0000-000000000006', '30000000-0000-0000-0000-000000000005',
     now() - interval '1 minute');
INSERT INTO idempotency_keys (key, tenant_id, operator_id, endpoint, method, request_hash,
                              response_status, response_body, expires_at) VALUES
    ('k1', '10000000-0000-0000-0000-0000000000aa', '30000000-0000-0000-0000-0000000000aa',
     '/api/v1/allocate', 'POST', 'h', 200, '\\x7b7d', now() + interval '1 day');
"""


async def _tenant_keyed_problems(
    conn: asyncpg.Connection, tables: frozenset[str] | set[str] = TENANT_KEYED
) -> list[str]:
    """What keeps the schema from being tenant-keyed (empty: nothing); `tables` are those
    that must have the primary key (tenant_id, id)."""
    problems = []
    keys = await conn.fetch("""
        SELECT c.conrelid::regclass::text AS tbl, c.conname, c.contype::text AS contype,
               c.confdeltype::text AS confdeltype,
               c.confrelid::regclass::text AS parent,
               ARRAY(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY k(n, i)
                     JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n
                     ORDER BY k.i)::text[] AS cols,
               ARRAY(SELECT a.attname FROM unnest(c.confkey) WITH ORDINALITY k(n, i)
                     JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n
                     ORDER BY k.i)::text[] AS parent_cols
        FROM pg_constraint c
        WHERE c.connamespace = 'public'::regnamespace AND c.contype IN ('p', 'u', 'f')
          AND c.conrelid::regclass::text <> 'alembic_version'
    """)
    indexes = await conn.fetch("""
        SELECT i.indrelid::regclass::text AS tbl, i.indisunique AS is_unique,
               ARRAY(SELECT a.attname FROM unnest(i.indkey) WITH ORDINALITY k(n, o)
                     JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n
                     ORDER BY k.o)::text[] AS cols
        FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid
        WHERE t.relnamespace = 'public'::regnamespace AND t.relname <> 'alembic_version'
    """)
    for table in sorted(tables):
        pkey = [k["cols"] for k in keys if k["tbl"] == table and k["contype"] == "p"]
        if pkey != [["tenant_id", "id"]]:
            problems.append(f"{table}: primary key {pkey}")
    for index in indexes:
        if (
            index["tbl"] not in KEYED_BY_LOOKUP
            and index["is_unique"]
            and index["cols"][0] != "tenant_id"
        ):
            problems.append(f"{index['tbl']}: unique index {index['cols']}")
    for key in keys:
        if key["contype"] == "f":
            problems += _foreign_key_problems(key, [i for i in indexes if i["tbl"] == key["tbl"]])
    for table in sorted(tables):
        if not any(k["tbl"] == table and k["parent"] == "tenants" for k in keys):
            problems.append(f"{table}: no foreign key to tenants")
    return problems


def _foreign_key_problems(key: asyncpg.Record, indexes: list[asyncpg.Record]) -> list[str]:
    """A foreign key must carry tenant_id into the parent's (tenant_id, id) (or be the key to
    tenants), never SET NULL, and have an index that leads with its columns."""
    problems = []
    name, cols, parent_cols = key["conname"], list(key["cols"]), list(key["parent_cols"])
    if key["confdeltype"] in ("n", "d"):
        problems.append(f"{name}: ON DELETE SET NULL/DEFAULT")
    if key["parent"] == "tenants":
        if (cols, parent_cols) != (["tenant_id"], ["id"]):
            problems.append(f"{name}: {cols} references tenants {parent_cols}")
    elif cols[0] != "tenant_id" or parent_cols != ["tenant_id", "id"]:
        problems.append(f"{name}: {cols} references {key['parent']} {parent_cols}")
    if not any(list(index["cols"][: len(cols)]) == cols for index in indexes):
        problems.append(f"{name}: no index leading with {cols}")
    return problems


async def test_tenant_keyed_schema_keeps_live_rows_down_and_up(
    pg_server: EmbeddedPostgres,
) -> None:
    """0006 on a database at 0005 holding the seed data and rows of every kind: every row
    and relationship survives, the four new tenant_ids come from the parents, the schema is
    tenant-keyed; downgrading restores 0005 exactly (schema and rows); upgrading again works."""
    pristine = _fresh_database(pg_server, "migration_0005_pristine")
    migrations.upgrade(pristine, "0005")
    dsn = _fresh_database(pg_server, "migration_tenant_keyed")
    # The seed data is written for the current schema: load it there, then go down to 0005
    # (whose catalog is checked against a database that never saw 0006).
    migrations.upgrade(dsn)
    conn = await asyncpg.connect(dsn)
    reference = await asyncpg.connect(pristine)
    try:
        await seed_demo_data(conn)
        migrations.downgrade(dsn, "0005")
        catalog_0005 = await _catalog(reference)
        assert await _catalog(conn) == catalog_0005
        await conn.execute(LIVE_ROWS_0005)
        rows_0005 = await _rows(conn)
        assert len(rows_0005["conversation_labels"]) == 28
        assert len(rows_0005["grace_period_assignments"]) == 7

        migrations.upgrade(dsn, "0006")  # later revisions add columns of their own
        assert await _rows(conn) == rows_0005
        for table, (parent, column) in BACKFILLED.items():
            mismatched = await conn.fetchval(
                f"SELECT count(*) FROM {table} x LEFT JOIN {parent} p ON p.id = x.{column} "
                "WHERE p.tenant_id IS DISTINCT FROM x.tenant_id"
            )
            assert mismatched == 0, table
        assert await _tenant_keyed_problems(conn, AT_0006) == []

        migrations.downgrade(dsn, "0005")
        assert await _catalog(conn) == catalog_0005
        assert await _rows(conn) == rows_0005

        migrations.upgrade(dsn, "0006")
        assert await _rows(conn) == rows_0005
        assert await _tenant_keyed_problems(conn, AT_0006) == []
    finally:
        await conn.close()
        await reference.close()


async def test_tenant_keyed_check_finds_a_table_that_is_not(pg_server: EmbeddedPostgres) -> None:
    """The schema check above can fail: at 0005, and on a table keyed the old way."""
    dsn = _fresh_database(pg_server, "migration_tenant_keyed_check")
    migrations.upgrade(dsn, "0005")
    conn = await asyncpg.connect(dsn)
    try:
        problems = await _tenant_keyed_problems(conn)
        assert "operator_status: primary key [['id']]" in problems
        assert "conversation_refs_assigned_operator_id_fkey: ON DELETE SET NULL/DEFAULT" in problems
        migrations.upgrade(dsn)
        assert await _tenant_keyed_problems(conn) == []
        await conn.execute("DROP INDEX idx_grace_operator")
        assert await _tenant_keyed_problems(conn) == [
            "grace_period_assignments_operator_fkey: no index leading with "
            "['tenant_id', 'operator_id']"
        ]
    finally:
        await conn.close()


async def _version(conn: asyncpg.Connection) -> str:
    return str(await conn.fetchval("SELECT version_num FROM alembic_version"))


async def test_tenant_keyed_upgrade_refuses_rows_across_tenants(
    pg_server: EmbeddedPostgres,
) -> None:
    """A subscription of one tenant's operator to another tenant's inbox (never made by the
    API) cannot get one tenant_id: the upgrade fails on the foreign keys and changes nothing."""
    dsn = _fresh_database(pg_server, "migration_tenant_keyed_cross")
    migrations.upgrade(dsn, "0005")
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("""
            INSERT INTO tenants (id, name) VALUES
                ('10000000-0000-0000-0000-0000000000aa', 'A'),
                ('10000000-0000-0000-0000-0000000000bb', 'B');
            INSERT INTO operators (id, tenant_id) VALUES
                ('30000000-0000-0000-0000-0000000000aa', '10000000-0000-0000-0000-0000000000aa');
            INSERT INTO inboxes (id, tenant_id, phone_number, display_name) VALUES
                ('20000000-0000-0000-0000-0000000000bb', '10000000-0000-0000-0000-0000000000bb',
                 '+15550008888', 'B inbox');
            INSERT INTO operator_inbox_subscriptions (operator_id, inbox_id) VALUES
                ('30000000-0000-0000-0000-0000000000aa', '20000000-0000-0000-0000-0000000000bb');
        """)
        rows = await _rows(conn)
        with pytest.raises(DBAPIError, match="violates foreign key constraint"):
            migrations.upgrade(dsn)
        assert await _version(conn) == "0005"
        assert await _rows(conn) == rows
    finally:
        await conn.close()


async def test_tenant_keyed_upgrade_gives_up_on_a_held_lock(pg_server: EmbeddedPostgres) -> None:
    """lock_timeout: with a transaction holding a lock on a table, the upgrade fails (after
    the 5 s lock_timeout) instead of queueing everything behind it, and changes nothing."""
    dsn = _fresh_database(pg_server, "migration_tenant_keyed_lock")
    migrations.upgrade(dsn, "0005")
    holder = await asyncpg.connect(dsn)
    try:
        async with holder.transaction():
            await holder.execute("LOCK TABLE operator_status IN ACCESS SHARE MODE")
            with pytest.raises(DBAPIError, match="lock timeout"):
                migrations.upgrade(dsn)
        assert await _version(holder) == "0005"
        columns = await holder.fetch(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = 'operator_status' AND column_name = 'tenant_id'"
        )
        assert columns == []
    finally:
        await holder.close()
