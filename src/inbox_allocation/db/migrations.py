"""Run the Alembic migrations programmatically (used by the CLI and the tests)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from alembic import command, context, op
from alembic.config import Config
from sqlalchemy import text

from inbox_allocation.config import ConfigError


def alembic_ini() -> Path:
    """`ALEMBIC_CONFIG`, else ./alembic.ini, else the checkout this package lives in."""
    candidates = [
        Path(os.environ["ALEMBIC_CONFIG"]) if os.environ.get("ALEMBIC_CONFIG") else None,
        Path.cwd() / "alembic.ini",
        Path(__file__).resolve().parents[3] / "alembic.ini",
    ]
    for candidate in candidates:
        if candidate is not None and candidate.is_file():
            return candidate
    raise ConfigError("alembic.ini not found: run from the project directory or set ALEMBIC_CONFIG")


def _config(dsn: str) -> Config:
    config = Config(str(alembic_ini()))
    config.attributes["dsn"] = dsn
    return config


def _run_on_own_thread(action: Callable[[], None]) -> None:
    """Alembic's env.py calls asyncio.run(), which cannot nest in a running event loop (the
    tests); a short-lived thread gives it a loop of its own, wherever we are called from."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="alembic") as executor:
        executor.submit(action).result()


def upgrade(dsn: str, revision: str = "head") -> None:
    _run_on_own_thread(lambda: command.upgrade(_config(dsn), revision))


def downgrade(dsn: str, revision: str = "base") -> None:
    _run_on_own_thread(lambda: command.downgrade(_config(dsn), revision))


_TOKENS = re.compile(r"\$\$|'(?:[^']|'')*'|--[^\n]*|;|[^$';-]+|.", re.DOTALL)


def split_statements(script: str) -> list[str]:
    """Split an SQL script on `;` outside strings, comments and `$$ … $$` bodies.

    Migrations keep readable multi-statement scripts, but SQLAlchemy's asyncpg adapter
    prepares each `op.execute` and PostgreSQL cannot prepare several commands at once.
    """
    statements: list[str] = []
    current: list[str] = []
    in_dollar_body = False
    for piece in _TOKENS.findall(script):
        if piece == "$$":
            in_dollar_body = not in_dollar_body
        if piece == ";" and not in_dollar_body:
            statements.append("".join(current))
            current = []
        elif not piece.startswith("--"):
            current.append(piece)
    statements.append("".join(current))
    return [statement.strip() for statement in statements if statement.strip()]


def execute_script(script: str) -> None:
    """`op.execute` each statement of `script` (inside an Alembic migration)."""
    for statement in split_statements(script):
        op.execute(statement)


# ---- Citus: distributing tenant-keyed tables ---------------------------------------------
#
# The same migrations run on plain PostgreSQL and on Citus. On Citus (the `citus` extension is
# installed in the database), `tenants` is a reference table (a copy on every node) and every
# other table is distributed by `tenant_id`, all colocated: a tenant's rows of every table
# live on one shard group, so a statement that filters each of its tables by one tenant runs
# on one node. On plain PostgreSQL the functions below do nothing.
#
# Shard count of the colocation group, fixed when the first table is distributed: alembic
# `-x citus_shard_count=N`, else the environment variable CITUS_SHARD_COUNT, else Citus's own
# setting `citus.shard_count` (default 32: room for a production cluster to grow to many
# worker nodes). Test clusters use 4: every shard adds to the cost of each TRUNCATE and DDL.

# The table whose colocation group every tenant-keyed table joins.
COLOCATION_ANCHOR = "inboxes"


def citus_shard_count() -> int | None:
    """The configured shard count; None: Citus's own `citus.shard_count`."""
    x_args = context.get_x_argument(as_dictionary=True)
    raw = x_args.get("citus_shard_count") or os.environ.get("CITUS_SHARD_COUNT")
    if not raw:
        return None
    try:
        count = int(raw)
    except ValueError:
        count = 0
    if count < 1:
        raise ConfigError(f"citus_shard_count must be a positive integer, got {raw!r}")
    return count


def citus_installed() -> bool:
    """Is this database a Citus coordinator (the extension is installed)?"""
    query = text("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')")
    return bool(op.get_bind().execute(query).scalar())


def _citus_session() -> None:
    # Distributing a table that has triggers (the priority-key and aged-flag triggers of
    # conversation_refs) is refused unless the session allows them; they run on the shards.
    op.execute("SET LOCAL citus.enable_unsafe_triggers = on")
    # One connection per node for the rest of the migration: foreign keys to the reference
    # table cannot be added after parallel shard commands in the same transaction.
    op.execute("SET LOCAL citus.multi_shard_modify_mode = 'sequential'")


def distribute_by_tenant(tables: list[str], *, reference: tuple[str, ...] = ()) -> None:
    """On Citus: make `reference` tables reference tables, then distribute each of `tables`
    by tenant_id in the colocation group of COLOCATION_ANCHOR (created with the configured
    shard count when the anchor itself is in `tables`). Rows already in a table move to its
    shards. No-op on plain PostgreSQL.

    Call it after the table's primary key and unique constraints (which must include
    tenant_id) exist and BEFORE adding its foreign keys: Citus refuses to distribute a table
    that has foreign keys to local tables (so no inline REFERENCES in CREATE TABLE either).
    A later migration adding a tenant-keyed table: CREATE TABLE without foreign keys, then
    `distribute_by_tenant(["new_table"])`, then ALTER TABLE … ADD CONSTRAINT … FOREIGN KEY.
    """
    if not citus_installed():
        return
    _citus_session()
    for table in reference:
        op.execute(f"SELECT create_reference_table('{table}')")
        op.execute(f"SELECT truncate_local_data_after_distributing_table('{table}')")
    for table in tables:
        if table == COLOCATION_ANCHOR:
            shard_count = citus_shard_count()
            placement = "colocate_with => 'none'"
            if shard_count is not None:
                placement += f", shard_count => {shard_count}"
        else:
            placement = f"colocate_with => '{COLOCATION_ANCHOR}'"
        op.execute(f"SELECT create_distributed_table('{table}', 'tenant_id', {placement})")
        # The rows were copied to the shards; drop the coordinator's local copy.
        op.execute(f"SELECT truncate_local_data_after_distributing_table('{table}')")


def undistribute(tables: list[str]) -> None:
    """On Citus: turn those of `tables` that are distributed or reference tables back into
    local tables (rows come back to the coordinator), for downgrades. Drop their foreign keys
    first. No-op on plain PostgreSQL."""
    if not citus_installed():
        return
    _citus_session()
    query = text(
        "SELECT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = CAST(:t AS regclass))"
    )
    for table in tables:
        if op.get_bind().execute(query, {"t": table}).scalar():
            op.execute(f"SELECT undistribute_table('{table}')")
