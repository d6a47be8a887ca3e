"""The grace sweeper: releases only what is still held by an operator who stayed OFFLINE."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from inbox_allocation.db.seed_ids import (
    ACME,
    ACME_MANAGER,
    ACME_OP4,
    ACME_OP5,
    ACME_OP7,
    INBOX_SUPPORT,
    conversation,
)
from inbox_allocation.services.grace import GraceSweeper
from tests.support.http import headers


def sweeper(app: FastAPI, batch_size: int = 100) -> GraceSweeper:
    return GraceSweeper(app.state.db, batch_size)


async def expire_all(db: asyncpg.Pool) -> None:
    await db.execute("UPDATE grace_period_assignments SET expires_at = now() - interval '1 s'")


async def state_of(db: asyncpg.Pool, number: int) -> tuple[str, str | None]:
    row = await db.fetchrow(
        "SELECT state::text, assigned_operator_id::text FROM conversation_refs WHERE id = $1",
        uuid.UUID(conversation(number)),
    )
    assert row is not None
    return row["state"], row["assigned_operator_id"]


async def go_offline(client: httpx.AsyncClient, operator: str) -> None:
    response = await client.put(
        "/api/v1/operator/status", headers=headers(operator), json={"status": "OFFLINE"}
    )
    assert response.status_code == 200


async def test_releases_conversations_of_operators_still_offline(
    app: FastAPI, client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    await go_offline(client, ACME_OP4)  # grace rows for 7…05 and 7…07
    await expire_all(db)
    result = await sweeper(app).sweep()
    assert await state_of(db, 5) == ("QUEUED", None)
    assert await state_of(db, 7) == ("QUEUED", None)
    # The other seed rows belong to AVAILABLE operators: removed, nothing released
    # (docs/decisions.md#grace-period).
    assert await state_of(db, 23) == ("ALLOCATED", ACME_OP7)
    assert (result.processed, result.released) == (6, 2)
    assert await db.fetchval("SELECT count(*) FROM grace_period_assignments") == 0


async def test_operator_back_before_expiry_keeps_everything(
    app: FastAPI, client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    await go_offline(client, ACME_OP4)
    await expire_all(db)
    await db.execute(
        "UPDATE operator_status SET status = 'AVAILABLE' WHERE operator_id = $1",
        uuid.UUID(ACME_OP4),
    )  # back, but the rows were (artificially) left behind: the sweeper must not release
    await sweeper(app).sweep()
    assert await state_of(db, 5) == ("ALLOCATED", ACME_OP4)


async def test_reassigned_conversation_is_not_released(
    app: FastAPI, client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    await go_offline(client, ACME_OP4)
    await db.execute(
        "UPDATE conversation_refs SET assigned_operator_id = $2 WHERE id = $1",
        uuid.UUID(conversation(5)), uuid.UUID(ACME_OP5),
    )  # fmt: skip
    await expire_all(db)
    await sweeper(app).sweep()
    assert await state_of(db, 5) == ("ALLOCATED", ACME_OP5)
    assert await state_of(db, 7) == ("QUEUED", None)


async def test_unexpired_rows_are_left_alone(
    app: FastAPI, client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    await go_offline(client, ACME_OP4)  # expires in 5 minutes
    result = await sweeper(app).sweep()
    assert result.released == 0
    assert await state_of(db, 5) == ("ALLOCATED", ACME_OP4)
    assert (
        await db.fetchval(
            "SELECT count(*) FROM grace_period_assignments WHERE operator_id = $1",
            uuid.UUID(ACME_OP4),
        )
        == 2
    )


async def _many_offline_allocations(db: asyncpg.Pool, count: int) -> None:
    """`count` extra conversations allocated to operator 04, who is OFFLINE, all expired."""
    await db.executemany(
        "INSERT INTO conversation_refs (tenant_id, inbox_id, external_conversation_id, "
        "customer_phone_number, state, assigned_operator_id) "
        "VALUES ('10000000-0000-0000-0000-000000000001', "
        "'20000000-0000-0000-0000-000000000001', $1, '+15550001111', 'ALLOCATED', $2)",
        [(f"grace-{n}", uuid.UUID(ACME_OP4)) for n in range(count)],
    )


async def test_one_run_drains_every_batch(
    app: FastAPI, client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    await _many_offline_allocations(db, 23)
    await go_offline(client, ACME_OP4)  # 25 grace rows for 04
    await expire_all(db)
    result = await sweeper(app, batch_size=4).sweep()
    assert result.released == 25
    assert await db.fetchval("SELECT count(*) FROM grace_period_assignments") == 0


async def test_overlapping_sweepers_release_each_conversation_once(
    app: FastAPI, client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    await _many_offline_allocations(db, 58)
    await go_offline(client, ACME_OP4)  # 60 grace rows for 04
    await expire_all(db)
    results = await asyncio.gather(*(sweeper(app, batch_size=5).sweep() for _ in range(6)))
    assert sum(r.released for r in results) == 60
    assert sum(r.processed for r in results) == 64  # + the 4 other seed rows
    queued_by_grace = await db.fetchval(
        "SELECT count(*) FROM conversation_refs WHERE external_conversation_id LIKE 'grace-%' "
        "AND state = 'QUEUED'"
    )
    assert queued_by_grace == 58


async def test_sweeps_racing_status_flips_do_not_deadlock(
    app: FastAPI, client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    await _many_offline_allocations(db, 30)

    async def flip() -> None:
        for status in ("OFFLINE", "AVAILABLE") * 5:
            await client.put("/api/v1/operator/status", headers=headers(ACME_OP4),
                             json={"status": status})  # fmt: skip
            await expire_all(db)

    async def sweep_repeatedly() -> None:
        for _ in range(10):
            await sweeper(app, batch_size=3).sweep()

    async def lifecycle() -> None:
        for number in (5, 7):
            await client.post("/api/v1/deallocate", headers=headers(ACME_MANAGER),
                              json={"conversation_id": conversation(number)})  # fmt: skip

    await asyncio.wait_for(asyncio.gather(flip(), sweep_repeatedly(), sweep_repeatedly(),
                                          lifecycle()), timeout=60)  # fmt: skip
    # Invariant: no grace row of an operator who is not OFFLINE survives a status change,
    # and every released conversation is consistently QUEUED without an operator.
    inconsistent = await db.fetchval(
        "SELECT count(*) FROM conversation_refs WHERE (state = 'QUEUED') <> "
        "(assigned_operator_id IS NULL) AND state <> 'RESOLVED'"
    )
    assert inconsistent == 0


@pytest.mark.parametrize("ending", ["resolve", "deallocate", "move_inbox", "reassign"])
async def test_offline_racing_a_transition_leaves_no_stale_grace_row(
    client: httpx.AsyncClient, db: asyncpg.Pool, ending: str
) -> None:
    """Going OFFLINE while a manager ends (or hands over) the allocation: whichever commits
    first, no grace row may remain for an allocation that no longer exists."""
    bodies = {
        "resolve": {"conversation_id": conversation(5)},
        "deallocate": {"conversation_id": conversation(5)},
        "move_inbox": {"conversation_id": conversation(5), "inbox_id": INBOX_SUPPORT},
        "reassign": {"conversation_id": conversation(5), "operator_id": ACME_OP5},
    }
    for _ in range(15):
        await db.execute(
            "UPDATE conversation_refs SET state = 'ALLOCATED', assigned_operator_id = $2, "
            "inbox_id = '20000000-0000-0000-0000-000000000001', resolved_at = NULL "
            "WHERE id = $1",
            uuid.UUID(conversation(5)), uuid.UUID(ACME_OP4),
        )  # fmt: skip
        await db.execute("UPDATE operator_status SET status = 'AVAILABLE' WHERE operator_id = $1",
                         uuid.UUID(ACME_OP4))  # fmt: skip
        await db.execute("DELETE FROM grace_period_assignments")
        await asyncio.gather(
            client.put("/api/v1/operator/status", headers=headers(ACME_OP4),
                       json={"status": "OFFLINE"}),
            client.post(f"/api/v1/{ending}", headers=headers(ACME_MANAGER), json=bodies[ending]),
        )  # fmt: skip
        stale = await db.fetchval(
            "SELECT count(*) FROM grace_period_assignments g JOIN conversation_refs c "
            "ON c.tenant_id = g.tenant_id AND c.id = g.conversation_id "
            "WHERE c.state <> 'ALLOCATED' "
            "OR c.assigned_operator_id <> g.operator_id"
        )
        assert stale == 0


async def test_f11_a_run_goes_past_rows_it_has_to_skip(
    app: FastAPI, client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    """The oldest expired rows are held by another transaction: the run skips them and still
    releases the later ones (it used to end at the first batch that could take nothing)."""
    await db.execute("DELETE FROM grace_period_assignments")
    await go_offline(client, ACME_OP4)  # grace rows for 7…05 and 7…07
    await db.execute(
        "UPDATE grace_period_assignments SET expires_at = now() - interval '1 minute' "
        "WHERE conversation_id = $1",
        uuid.UUID(conversation(5)),
    )
    await db.execute(
        "UPDATE grace_period_assignments SET expires_at = now() - interval '1 second' "
        "WHERE conversation_id = $1",
        uuid.UUID(conversation(7)),
    )
    async with db.acquire() as holder, holder.transaction():
        await holder.execute(
            f"SELECT 1 FROM conversation_refs WHERE tenant_id = '{ACME}' AND id = $1"
            " FOR NO KEY UPDATE",
            uuid.UUID(conversation(5)),
        )
        result = await sweeper(app, batch_size=1).sweep()
    assert (result.processed, result.released) == (1, 1)
    assert await state_of(db, 7) == ("QUEUED", None)
    assert await state_of(db, 5) == ("ALLOCATED", ACME_OP4.lower())


async def test_a_batch_of_rows_held_elsewhere_does_not_end_the_run(
    app: FastAPI, client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    """The oldest expired rows (a full batch) are held by another transaction and skipped;
    the run goes on past them and releases the later ones (it used to stop at the first
    batch that processed nothing)."""
    await go_offline(client, ACME_OP4)  # grace rows for 7…05 and 7…07
    await expire_all(db)
    op4 = uuid.UUID(ACME_OP4)
    await db.execute(
        "UPDATE grace_period_assignments SET expires_at = $2 WHERE operator_id <> $1", op4,
        datetime(2000, 1, 1, tzinfo=UTC),  # older than op4's rows: first in line
    )  # fmt: skip
    held = await db.fetchval(
        "SELECT count(*) FROM grace_period_assignments WHERE operator_id <> $1", op4
    )
    tenants = await db.fetch(
        "SELECT DISTINCT tenant_id FROM grace_period_assignments WHERE operator_id <> $1", op4
    )
    async with db.acquire() as holder, holder.transaction():
        for tenant in tenants:  # one tenant per locking statement (one shard on Citus)
            await holder.execute(
                "SELECT 1 FROM grace_period_assignments"
                " WHERE tenant_id = $2 AND operator_id <> $1 FOR UPDATE",
                op4, tenant["tenant_id"],
            )  # fmt: skip
        result = await sweeper(app, batch_size=held).sweep()
    assert (result.processed, result.released) == (2, 2)
    assert await state_of(db, 5) == ("QUEUED", None)
    assert await state_of(db, 7) == ("QUEUED", None)
