"""Migrations: every table, enum and index of the schema; down and up again cleanly."""

from __future__ import annotations

import asyncpg
import pytest

from inbox_allocation.db import migrations
from inbox_allocation.db.launcher import EmbeddedPostgres

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
