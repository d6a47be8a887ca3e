"""Run the Alembic migrations programmatically (used by the CLI and the tests)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from alembic import command, op
from alembic.config import Config

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
