"""Alembic environment: raw-SQL migrations run over asyncpg (no second driver needed).

The DSN comes from `config.attributes["dsn"]` when called by `inbox-allocation migrate`, else
from the service's settings, so plain `alembic upgrade head` works against a configured server.
"""

import asyncio

import asyncpg
from alembic import context
from sqlalchemy import Connection, pool
from sqlalchemy.ext.asyncio import create_async_engine

from inbox_allocation.config import load_settings


def _dsn() -> str:
    dsn = context.config.attributes.get("dsn")
    return str(dsn) if dsn else load_settings().dsn


async def _run() -> None:
    dsn = _dsn()
    # asyncpg parses the libpq-style DSN itself (sslmode included); SQLAlchemy only wraps it.
    engine = create_async_engine(
        "postgresql+asyncpg://",
        async_creator=lambda: asyncpg.connect(dsn),
        poolclass=pool.NullPool,
    )
    async with engine.connect() as connection:
        await connection.run_sync(_migrate)
    await engine.dispose()


def _migrate(connection: Connection) -> None:
    context.configure(connection=connection, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) mode is not supported; run against a database")
asyncio.run(_run())
