"""Which database a command talks to: the configured server, or the embedded default.

The embedded server is used when neither DATABASE_URL nor DB_HOST is set. It is started on
the calling (main) thread, before uvicorn or any other thread exists, so its parent-death
signal is tied to the process' lifetime.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from inbox_allocation.config import Settings
from inbox_allocation.db.launcher import EmbeddedPostgres, LauncherConfig, LauncherError


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


def serve_lock_file(settings: Settings) -> Path:
    """Held by the `serve` process that uses the embedded server of this data directory."""
    return settings.embedded_data_dir.parent / "serve.lock"


@contextmanager
def exclusive_serve(settings: Settings) -> Iterator[None]:
    """Refuse a second `serve` on the same embedded data directory.

    Without it the second one attaches to the first one's PostgreSQL and is left answering
    503 for good when the first stops it. An advisory lock (flock) rather than a pid file:
    the kernel drops it when its holder dies, even by SIGKILL, so it is never stale. The
    file records the holder's pid for the message. Short commands (migrate, seed, tenant)
    take no lock: they may attach to a running service's database.
    """
    path = serve_lock_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise LauncherError(
                f"another `inbox-allocation serve` (pid {holder}) is already running on the "
                f"embedded database in {settings.embedded_data_dir}; stop it first, or give "
                "this one its own EMBEDDED_DB_DIR and DB_PORT"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
