"""SIGTERM under load: accepted requests complete, new connections are refused, exit 0 in
time, and no process (worker or PostgreSQL) is left behind."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from inbox_allocation.db.seed_ids import ACME_MANAGER, conversation
from inbox_allocation.processes import (
    descendants,
    free_port,
    parent_death_signal,
    survivors,
    wait_ready,
    world_traversable_tempdir,
)
from tests.support.http import headers
from tests.support.paths import REPO_ROOT

pytestmark = pytest.mark.no_db

SHUTDOWN_TIMEOUT_SECONDS = 15
CLIENTS = 32


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = world_traversable_tempdir("inbox-allocation-shutdown-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def start_service(workdir: Path, db_port: int, http_port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DB_", "DATABASE_URL"))}
    env.update(
        EMBEDDED_DB_DIR=str(workdir / "pg"), DB_PORT=str(db_port), SERVER_PORT=str(http_port),
        SERVER_HOST="127.0.0.1", SERVER_WORKERS="2", LOG_LEVEL="warning",
        SHUTDOWN_TIMEOUT=f"{SHUTDOWN_TIMEOUT_SECONDS}s", DB_MAX_CONNS="40",
    )  # fmt: skip
    return subprocess.Popen(
        [sys.executable, "-m", "inbox_allocation", "serve"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=parent_death_signal(),  # noqa: PLW1509 - only prctl
    )


def connection_refused(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        try:
            sock.connect(("127.0.0.1", port))
        except ConnectionRefusedError:
            return True
        except OSError:
            return False
    return False


async def test_sigterm_drains_accepted_requests_and_leaves_nothing(workdir: Path) -> None:
    db_port, http_port = free_port(), free_port()
    service = start_service(workdir, db_port, http_port)
    try:
        await asyncio.to_thread(wait_ready, service, f"http://127.0.0.1:{http_port}")
        processes = descendants(service.pid)
        assert len(processes) >= 3  # two workers and PostgreSQL (plus its own children)
        dsn = f"postgresql://allocation_user:allocation_pass@127.0.0.1:{db_port}/allocation_db"
        holder = await asyncpg.connect(dsn)
        # A second connection watches: inside the holder's transaction pg_stat_activity would
        # return the snapshot taken at its first read (PostgreSQL caches it per transaction).
        observer = await asyncpg.connect(dsn)
        base = f"http://127.0.0.1:{http_port}"
        limits = httpx.Limits(max_connections=CLIENTS)
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:
            # Hold conversation 7…05 so 32 resolves are in flight when SIGTERM arrives.
            blocker = holder.transaction()
            await blocker.start()
            await holder.execute("SELECT 1 FROM conversation_refs WHERE id = $1 FOR UPDATE",
                                 uuid.UUID(conversation(5)))  # fmt: skip
            in_flight = [
                asyncio.create_task(
                    client.post(
                        "/api/v1/resolve",
                        headers=headers(ACME_MANAGER),
                        json={"conversation_id": conversation(5)},
                    )
                )
                for _ in range(CLIENTS)
            ]
            for _ in range(100):  # until all 32 wait on the lock inside PostgreSQL
                waiting = await observer.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                )
                if waiting >= CLIENTS:
                    break
                await asyncio.sleep(0.05)
            assert waiting >= CLIENTS

            signalled = time.monotonic()
            os.kill(service.pid, signal.SIGTERM)
            await asyncio.sleep(1.0)
            # Draining: the listening socket is closed, new connections are refused.
            assert connection_refused(http_port)
            await blocker.rollback()  # let the accepted requests finish
            responses = await asyncio.gather(*in_flight, return_exceptions=True)
        await holder.close()
        await observer.close()

        statuses = [r.status_code if isinstance(r, httpx.Response) else repr(r)
                    for r in responses]  # fmt: skip
        assert statuses == [200] * CLIENTS, statuses
        exit_code = await asyncio.to_thread(service.wait, SHUTDOWN_TIMEOUT_SECONDS + 5)
        assert exit_code == 0
        assert time.monotonic() - signalled <= SHUTDOWN_TIMEOUT_SECONDS
        # No worker and no PostgreSQL process left behind.
        assert survivors(processes) == []
    finally:
        if service.poll() is None:
            os.killpg(service.pid, signal.SIGKILL)
