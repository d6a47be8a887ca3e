"""Seed data (docs/decisions.md#demo-data): exact ids and totals; seeding twice changes nothing."""

from __future__ import annotations

import asyncpg

from inbox_allocation.db.seed import seed_demo_data

COUNT_EVERYTHING = """
SELECT (SELECT count(*) FROM tenants) AS tenants,
       (SELECT count(*) FROM inboxes) AS inboxes,
       (SELECT count(*) FROM operators) AS operators,
       (SELECT count(*) FROM operator_status) AS statuses,
       (SELECT count(*) FROM operator_inbox_subscriptions) AS subscriptions,
       (SELECT count(*) FROM labels) AS labels,
       (SELECT count(*) FROM conversation_refs) AS conversations,
       (SELECT count(*) FROM conversation_labels) AS conversation_labels,
       (SELECT count(*) FROM grace_period_assignments) AS grace_rows
"""


async def test_seed_has_the_contract_totals(db: asyncpg.Pool) -> None:
    counts = dict(await db.fetchrow(COUNT_EVERYTHING) or {})
    assert counts == {
        "tenants": 2, "inboxes": 5, "operators": 15, "statuses": 15, "subscriptions": 22,
        "labels": 12, "conversations": 50, "conversation_labels": 25, "grace_rows": 5,
    }  # fmt: skip
    rows = await db.fetch("SELECT state::text, count(*) FROM conversation_refs GROUP BY 1")
    states = {row[0]: row[1] for row in rows}
    assert states == {"QUEUED": 15, "ALLOCATED": 12, "RESOLVED": 23}
    rows = await db.fetch(
        "SELECT right(inbox_id::text, 1), count(*) FROM conversation_refs GROUP BY 1"
    )
    per_inbox = {row[0]: row[1] for row in rows}
    assert per_inbox == {"1": 15, "2": 15, "3": 8, "4": 8, "5": 4}


async def test_seed_ids_and_relative_times(db: asyncpg.Pool) -> None:
    row = await db.fetchrow(
        """SELECT c.*, now() - c.last_message_at AS waited
           FROM conversation_refs c WHERE id = '70000000-0000-0000-0000-000000000004'"""
    )
    assert row is not None
    assert str(row["tenant_id"]) == "10000000-0000-0000-0000-000000000001"
    assert str(row["inbox_id"]) == "20000000-0000-0000-0000-000000000001"
    assert row["customer_phone_number"] == "+14155551004"
    assert row["message_count"] == 8
    assert abs(row["waited"].total_seconds() - 3600) < 60
    resolved = await db.fetchrow(
        "SELECT resolved_at = last_message_at AS same FROM conversation_refs "
        "WHERE id = '70000000-0000-0000-0000-000000000050'"
    )
    assert resolved is not None
    assert resolved["same"] is True


async def test_seeding_twice_changes_nothing(db: asyncpg.Pool) -> None:
    before = [dict(r) for r in await db.fetch("SELECT * FROM conversation_refs ORDER BY id")]
    counts_before = dict(await db.fetchrow(COUNT_EVERYTHING) or {})
    async with db.acquire() as conn:
        await seed_demo_data(conn)
    after = [dict(r) for r in await db.fetch("SELECT * FROM conversation_refs ORDER BY id")]
    assert after == before
    assert dict(await db.fetchrow(COUNT_EVERYTHING) or {}) == counts_before
