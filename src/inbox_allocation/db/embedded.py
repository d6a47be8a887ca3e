"""Which database a command talks to: the configured server, or the embedded default.

The embedded server is used when neither DATABASE_URL nor DB_HOST is set. It is started on
the calling (main) thread, before uvicorn or any other thread exists, so its parent-death
signal is tied to the process' lifetime.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from inbox_allocation.config import Settings
from inbox_allocation.db.launcher import EmbeddedPostgres, LauncherConfig


def launcher_config(settings: Settings) -> LauncherConfig:
    return LauncherConfig(
        data_dir=settings.embedded_data_dir,
        port=settings.db_port,
        user=settings.db_user,
        password=settings.db_password,
        database=settings.db_name,
        bin_dir=settings.pg_bin_dir,
        run_as=settings.pg_run_as,
        relocate_if_unreachable=settings.embedded_db_dir is None,
    )


def supervisor_pid_file(settings: Settings) -> Path:
    """Where `inbox-allocation db start` records the background server's supervisor."""
    return settings.embedded_data_dir.parent / "postgres-supervisor.pid"


@contextmanager
def database_dsn(settings: Settings, stop_timeout: float = 30.0) -> Iterator[str]:
    """Yield a DSN; start (and afterwards stop) the embedded server if none is configured."""
    if not settings.use_embedded_db:
        yield settings.dsn
        return
    server = EmbeddedPostgres(launcher_config(settings)).start()
    try:
        yield server.dsn
    finally:
        server.stop(timeout=stop_timeout)
