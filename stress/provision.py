"""SQL the harness runs itself: provisioning the world, waiting for the sweeper, the final
snapshot and the soak samples. (The load itself only uses the HTTP API.)"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg

from stress.model import ConversationRow, FinalRows, GraceRow, OperatorRow, World

SAMPLER_APPLICATION_NAME = "stress-harness"
SERVICE_APPLICATION_NAME = "inbox-allocation"  # set by the service's pool


async def connect(dsn: str) -> asyncpg.Connection:
    conn: asyncpg.Connection = await asyncpg.connect(
        dsn, server_settings={"application_name": SAMPLER_APPLICATION_NAME, "timezone": "UTC"}
    )
    return conn


async def provision(conn: asyncpg.Connection, world: World) -> None:
    """Tenants, inboxes, operators (role, capacity), status rows and subscriptions."""
    async with conn.transaction():
        for t_index, tenant in enumerate(world.tenants):
            await conn.execute(
                "INSERT INTO tenants (id, name, priority_weight_alpha, priority_weight_beta) "
                "VALUES ($1, $2, $3, $4)",
                tenant.id,
                tenant.name,
                Decimal(str(tenant.alpha)),
                Decimal(str(tenant.beta)),
            )
            await conn.executemany(
                "INSERT INTO inboxes (id, tenant_id, phone_number, display_name) "
                "VALUES ($1, $2, $3, $4)",
                [
                    (inbox, tenant.id, f"+1555{t_index + 1:02d}{i_index:05d}", f"Inbox {i_index}")
                    for i_index, inbox in enumerate(tenant.inboxes)
                ],
            )
            await conn.executemany(
                "INSERT INTO operators (id, tenant_id, role, max_concurrent_conversations) "
                "VALUES ($1, $2, $3::operator_role, $4)",
                [(op.id, tenant.id, op.role, op.max_concurrent) for op in tenant.operators],
            )
            await conn.executemany(
                "INSERT INTO operator_status (tenant_id, operator_id, status) "
                "VALUES ($1, $2, $3::operator_status_type)",
                [(tenant.id, op.id, op.initial_status) for op in tenant.operators],
            )
            await conn.executemany(
                "INSERT INTO operator_inbox_subscriptions (tenant_id, operator_id, inbox_id) "
                "VALUES ($1, $2, $3)",
                [(tenant.id, op.id, inbox) for op in tenant.operators for inbox in op.inboxes],
            )


async def wait_for_idle_sweeper(conn: asyncpg.Connection, limit: float) -> tuple[float, int]:
    """After the load: wait until no grace row is left (every OFFLINE operator's grace period
    has expired and been swept) and no priority key of older weights. Returns (seconds
    waited, rows left)."""
    started = time.monotonic()
    left = 0
    while True:
        # Also the priority-keys worker: after a weights change the allocation order is
        # exact only once no conversation carries keys of older weights.
        left = int(
            await conn.fetchval(
                "SELECT (SELECT count(*) FROM grace_period_assignments)"
                " + (SELECT count(*) FROM conversation_refs c JOIN tenants t"
                "    ON t.id = c.tenant_id WHERE c.weights_version < t.weights_version)"
            )
        )
        waited = time.monotonic() - started
        if left == 0 or waited >= limit:
            return waited, left
        await asyncio.sleep(0.25)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


async def snapshot(conn: asyncpg.Connection) -> FinalRows:
    """Every row the checker needs, from one consistent snapshot."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        taken_at = time.monotonic()  # the snapshot is fixed by the first query
        conversations = await conn.fetch(
            "SELECT id::text, tenant_id::text, inbox_id::text, external_conversation_id, "
            "state::text, assigned_operator_id::text, message_count, resolved_at "
            "FROM conversation_refs ORDER BY id"
        )
        taken_until = time.monotonic()
        grace = await conn.fetch(
            "SELECT conversation_id::text, operator_id::text, "
            "extract(epoch FROM now() - expires_at)::float8 AS expired "
            "FROM grace_period_assignments ORDER BY conversation_id"
        )
        operators = await conn.fetch(
            "SELECT o.id::text, o.tenant_id::text, s.status::text, o.max_concurrent_conversations "
            "FROM operators o LEFT JOIN operator_status s "
            "ON s.tenant_id = o.tenant_id AND s.operator_id = o.id ORDER BY o.id"
        )
        inboxes = await conn.fetch("SELECT id::text, tenant_id::text FROM inboxes")
    return FinalRows(
        conversations=tuple(
            ConversationRow(
                id=r["id"],
                tenant_id=r["tenant_id"],
                inbox_id=r["inbox_id"],
                external_id=r["external_conversation_id"],
                state=r["state"],
                operator=r["assigned_operator_id"],
                message_count=r["message_count"],
                resolved_at=_text(r["resolved_at"]),
            )
            for r in conversations
        ),
        grace=tuple(
            GraceRow(conversation_id=r[0], operator_id=r[1], expired_seconds=r[2]) for r in grace
        ),
        operators=tuple(
            OperatorRow(id=r[0], tenant_id=r[1], status=r[2], max_concurrent=r[3])
            for r in operators
        ),
        inboxes={r[0]: r[1] for r in inboxes},
        taken_at=taken_at,
        taken_until=taken_until,
    )


async def snapshots_every(
    conn: asyncpg.Connection,
    interval: float,
    load: asyncio.Future[Any],
    into: list[FinalRows],
) -> None:
    """Consistent snapshots every `interval` seconds while `load` runs."""
    while not load.done():
        try:
            await asyncio.wait_for(asyncio.shield(load), interval)
        except TimeoutError:
            into.append(await snapshot(conn))
        except Exception:  # the load's own error is raised by its awaiter
            return


DB_SAMPLE = f"""
SELECT
  (SELECT count(*) FROM pg_stat_activity
   WHERE application_name = '{SERVICE_APPLICATION_NAME}') AS service_connections,
  (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')
      AS all_connections,
  pg_total_relation_size('conversation_refs') AS conversation_bytes,
  pg_relation_size('conversation_refs') AS heap_bytes,
  pg_indexes_size('conversation_refs') AS index_bytes,
  s.n_live_tup AS live_tuples,
  s.n_dead_tup AS dead_tuples,
  s.autovacuum_count + s.vacuum_count AS vacuums,
  (SELECT count(*) FROM conversation_refs) AS conversations,
  (SELECT count(*) FROM conversation_refs WHERE state = 'QUEUED') AS queued,
  (SELECT count(*) FROM grace_period_assignments) AS grace_rows,
  (SELECT count(*) FROM idempotency_keys) AS idempotency_rows
FROM pg_stat_user_tables s
WHERE s.relname = 'conversation_refs'
"""


# Each index of the conversation table on its own (the soak names the ones that grew).
INDEX_SIZES = """
SELECT indexrelname AS name, pg_relation_size(indexrelid) AS bytes
FROM pg_stat_user_indexes
WHERE relname = 'conversation_refs'
"""
INDEX_KEY_PREFIX = "index_bytes:"


async def sample_database(conn: asyncpg.Connection) -> dict[str, int]:
    row = await conn.fetchrow(DB_SAMPLE)
    assert row is not None
    sample = {key: int(value or 0) for key, value in dict(row).items()}
    for index in await conn.fetch(INDEX_SIZES):
        sample[INDEX_KEY_PREFIX + index["name"]] = int(index["bytes"])
    return sample


async def autovacuum_settings(conn: asyncpg.Connection) -> dict[str, str]:
    rows = await conn.fetch(
        "SELECT name, setting, unit FROM pg_settings WHERE name LIKE 'autovacuum%' ORDER BY name"
    )
    return {r["name"]: f"{r['setting']}{r['unit'] or ''}" for r in rows}
