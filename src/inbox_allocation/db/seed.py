"""Load the demo data of docs/decisions.md#demo-data (idempotent: seeding twice changes nothing)."""

from __future__ import annotations

from importlib import resources

import asyncpg

from inbox_allocation.db.pool import Connection


def seed_sql() -> str:
    return resources.files("inbox_allocation.sql").joinpath("seed.sql").read_text()


async def seed_demo_data(conn: Connection) -> None:
    async with conn.transaction():
        await conn.execute(seed_sql())


async def seed_database(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await seed_demo_data(conn)
    finally:
        await conn.close()
