"""Allocation statement latency by queue shape, on any PostgreSQL (`--pg-bin-dir`).

The HTTP benchmark (bench.run) fills queues with a mix of young and aged conversations.
This one times the allocation statement alone against one deep inbox whose queue is all
young (< 24 h, the normal state), all aged (a backlog) or mixed (waits spread over 36 h).
The priority classes are looked up by separate scans, and neither may cost a walk through
the other class (the rows' aged flags are current, as the trigger and the sweeper keep
them). Each allocation runs in a transaction that is rolled back, so every sample sees the
same queue.

    python -m bench.queue_shapes                       # the embedded PostgreSQL
    python -m bench.queue_shapes --pg-bin-dir /usr/lib/postgresql/15/bin
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import time
import uuid
from pathlib import Path

import asyncpg

from bench.infra import log, make_workdir
from inbox_allocation.db import migrations
from inbox_allocation.db.launcher import EmbeddedPostgres, LauncherConfig
from inbox_allocation.processes import free_port
from inbox_allocation.sql.allocation import ALLOCATE_NEXT

TENANT = uuid.UUID("c0000000-0000-4000-8000-000000000001")
INBOX = uuid.UUID("c1000000-0000-4000-8000-000000000001")
OPERATOR = uuid.UUID("c2000000-0000-4000-8000-000000000001")

# last_message_at of each shape, as an SQL expression over random().
SHAPES = {
    "young": "now() - random() * interval '20 hours'",
    "aged": "now() - interval '2 days' - random() * interval '1 day'",
    # A third aged, all less than 12 h past the boundary: in young-key order they sit among
    # the young rows, the hardest case for a scan of one class.
    "mixed": "now() - random() * interval '36 hours'",
}

SETUP: list[tuple[str, tuple[uuid.UUID, ...]]] = [
    ("INSERT INTO tenants (id, name) VALUES ($1, 'queue-shapes')", (TENANT,)),
    ("INSERT INTO inboxes (id, tenant_id, phone_number, display_name) "
     "VALUES ($1, $2, '+15550000001', 'deep')", (INBOX, TENANT)),
    ("INSERT INTO operators (id, tenant_id) VALUES ($1, $2)", (OPERATOR, TENANT)),
    ("INSERT INTO operator_status (tenant_id, operator_id, status) "
            "SELECT tenant_id, id, 'AVAILABLE' FROM operators WHERE id = $1", (OPERATOR,)),
    ("INSERT INTO operator_inbox_subscriptions (tenant_id, operator_id, inbox_id) "
            "SELECT tenant_id, id, $2 FROM operators WHERE id = $1",
     (OPERATOR, INBOX)),
]  # fmt: skip


async def measure(dsn: str, depth: int, samples: int) -> dict[str, float]:
    conn = await asyncpg.connect(dsn, server_settings={"timezone": "UTC"})
    try:
        for sql, args in SETUP:
            await conn.execute(sql, *args)
        await conn.execute(
            "INSERT INTO conversation_refs (tenant_id, inbox_id, external_conversation_id, "
            "customer_phone_number, message_count, last_message_at) "
            "SELECT $1, $2, 'deep-' || g, '+1555' || lpad(g::text, 7, '0'), "
            "1 + floor(power(random(), 3) * 50)::int, now() FROM generate_series(1, $3) g",
            TENANT,
            INBOX,
            depth,
        )
        statement = await conn.prepare(ALLOCATE_NEXT)
        medians: dict[str, float] = {}
        for shape, last_message_at in SHAPES.items():
            await conn.execute(f"UPDATE conversation_refs SET last_message_at = {last_message_at}")
            await conn.execute("VACUUM ANALYZE conversation_refs")
            timings = []
            for _ in range(samples):
                transaction = conn.transaction()
                await transaction.start()
                started = time.perf_counter()
                row = await statement.fetchrow(TENANT, OPERATOR, time.time(), True)
                timings.append(time.perf_counter() - started)
                await transaction.rollback()
                if row is None:
                    raise RuntimeError(f"{shape}: nothing allocated from a queue of {depth}")
            medians[shape] = statistics.median(timings[samples // 5 :]) * 1e3
        return medians
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.queue_shapes", description=__doc__)
    parser.add_argument("--depth", type=int, default=300_000, help="queued conversations")
    parser.add_argument("--samples", type=int, default=200, help="allocations per shape")
    parser.add_argument("--pg-bin-dir", type=Path, help="PostgreSQL bin dir (default: embedded)")
    args = parser.parse_args(argv)

    workdir = make_workdir()
    server = EmbeddedPostgres(
        LauncherConfig(
            data_dir=workdir / "pg",
            port=free_port(),
            user="bench",
            password="bench-pass",  # noqa: S106 - a throwaway loopback-only cluster
            database="bench",
            bin_dir=args.pg_bin_dir,
        )
    ).start()
    try:
        migrations.upgrade(server.dsn)
        version = server.run_sql("SHOW server_version").strip()
        log(f"PostgreSQL {version}: {args.depth} queued conversations in one inbox")
        medians = asyncio.run(measure(server.dsn, args.depth, args.samples))
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"| queue shape | ALLOCATE_NEXT median (PostgreSQL {version}, depth {args.depth}) |")
    print("|---|---|")
    for shape, median in medians.items():
        print(f"| {shape} | {median:.3f} ms |")


if __name__ == "__main__":
    main()
