"""On Citus, an event's xid and the watermark it is compared with come from the same node.

Each node of a cluster numbers its own transactions. The stream's promise (a reader that
resumes from any cursor misses nothing, docs/events.md) holds only if the xid stored with a
tenant's event and the watermark a reader compares it with are both taken on the worker that
stores the tenant's events. The test first moves the coordinator's and that worker's
transaction ids at least 1,000 apart, so a number taken on the wrong node cannot fall into
the worker's range by chance, then checks both numbers the service produces: the xid of the
event /allocate writes and the watermark of GET /api/v1/events.
"""

from __future__ import annotations

import asyncpg
import httpx
import pytest

from inbox_allocation.db.citus_cluster import CitusCluster
from inbox_allocation.db.seed_ids import ACME, ACME_OP4
from inbox_allocation.services.events import decode_cursor
from tests.support.http import headers

pytestmark = [
    pytest.mark.asyncio(loop_scope="session"),
    pytest.mark.citus_only(reason="per-node transaction ids exist only on a cluster"),
]

GAP = 1000
CURRENT_XID = "SELECT pg_current_xact_id()::text::bigint"


async def next_xid(conn: asyncpg.Connection) -> int:
    """The node's next transaction id (reading it uses one up)."""
    xid: int = await conn.fetchval(CURRENT_XID)
    return xid + 1


async def burn_until(conn: asyncpg.Connection, target: int) -> None:
    while await next_xid(conn) < target:
        pass


async def test_event_xid_and_watermark_come_from_the_tenants_worker(
    client: httpx.AsyncClient, db: asyncpg.Pool, citus_cluster: CitusCluster
) -> None:
    port = await db.fetchval(
        "SELECT nodeport FROM citus_shards WHERE table_name = 'events'::regclass"
        " AND shardid = get_shard_id_for_distribution_column('events', $1::uuid)",
        ACME,
    )
    worker = next(n for n in citus_cluster.nodes[1:] if n.config.port == port)
    coordinator_conn = await asyncpg.connect(citus_cluster.node(0).dsn)
    worker_conn = await asyncpg.connect(worker.dsn)
    try:
        # Move the two counters apart (whichever is behind catches up and passes the other).
        coordinator_xid, worker_xid = await next_xid(coordinator_conn), await next_xid(worker_conn)
        if coordinator_xid >= worker_xid:
            await burn_until(coordinator_conn, worker_xid + GAP)
        else:
            await burn_until(worker_conn, coordinator_xid + GAP)
        worker_before = await next_xid(worker_conn)
        coordinator_before = await next_xid(coordinator_conn)

        start = await client.get("/api/v1/events", headers=headers(ACME_OP4))
        assert start.status_code == 200
        cursor = start.json()["data"]["next_after"]
        allocated = await client.post("/api/v1/allocate", headers=headers(ACME_OP4))
        assert allocated.status_code == 200, allocated.text

        worker_after = await next_xid(worker_conn)
        coordinator_after = await next_xid(coordinator_conn)
        watermark, _ = decode_cursor(cursor)
        assert worker_before - GAP // 2 <= watermark <= worker_after
        assert not coordinator_before - GAP // 2 <= watermark <= coordinator_after

        event_xid = await db.fetchval(
            "SELECT xid FROM events WHERE tenant_id = $1 AND type = 'conversation.allocated'"
            " ORDER BY xid DESC, seq DESC LIMIT 1",
            ACME,
        )
        assert worker_before <= event_xid < worker_after
        assert not coordinator_before <= event_xid < coordinator_after

        # And the reader that started before the allocation receives its event.
        page = await client.get(
            "/api/v1/events", params={"after": cursor}, headers=headers(ACME_OP4)
        )
        assert page.status_code == 200
        types = [event["type"] for event in page.json()["data"]["events"]]
        assert "conversation.allocated" in types
    finally:
        await coordinator_conn.close()
        await worker_conn.close()
