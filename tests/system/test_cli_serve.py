"""`inbox-allocation serve` on the embedded default, as `make run` starts it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from inbox_allocation.cli import where_to_go
from inbox_allocation.config import Settings
from inbox_allocation.db.seed_ids import ACME, ACME_ADMIN, TECH_ADMIN
from inbox_allocation.processes import (
    alive,
    free_port,
    parent_death_signal,
    wait_ready,
    world_traversable_tempdir,
)
from tests.support.paths import REPO_ROOT

pytestmark = pytest.mark.no_db


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = world_traversable_tempdir("inbox-allocation-serve-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def start_service(workdir: Path, db_port: int, http_port: int) -> subprocess.Popen[bytes]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DB_", "DATABASE_URL", "SERVER_"))
    }
    env.update(
        EMBEDDED_DB_DIR=str(workdir / "pg"),
        DB_PORT=str(db_port),
        SERVER_PORT=str(http_port),
        SERVER_HOST="127.0.0.1",
        LOG_LEVEL="warning",
    )
    return subprocess.Popen(
        [sys.executable, "-m", "inbox_allocation", "serve"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=parent_death_signal(),  # noqa: PLW1509 - only prctl
    )


def postgres_pid(data_dir: Path) -> int:
    return int((data_dir / "postmaster.pid").read_text().splitlines()[0])


def test_serve_migrates_seeds_survives_restart_and_leaves_no_orphan(workdir: Path) -> None:
    db_port, http_port = free_port(), free_port()

    first = start_service(workdir, db_port, http_port)
    try:
        wait_ready(first, f"http://127.0.0.1:{http_port}")
        seeded = httpx.get(
            f"http://127.0.0.1:{http_port}/health", headers={"X-Tenant-ID": ACME}, timeout=5
        )
        assert seeded.status_code == 200
        pid = postgres_pid(workdir / "pg")
        assert alive(pid)
        first.send_signal(signal.SIGKILL)  # the harshest stop: no chance to clean up
        first.wait(10)
        deadline = time.monotonic() + 10
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(pid), "PostgreSQL outlived the SIGKILLed service"
    finally:
        if first.poll() is None:
            first.kill()

    # Restart on the same data dir: the seed written by the first run is still there.
    second = start_service(workdir, db_port, http_port)
    try:
        wait_ready(second, f"http://127.0.0.1:{http_port}")
        check = subprocess.run(
            [sys.executable, "-c",
             "import asyncio, asyncpg, sys\n"
             "async def main():\n"
             f"    c = await asyncpg.connect('postgresql://allocation_user:allocation_pass@127.0.0.1:{db_port}/allocation_db')\n"
             "    print(await c.fetchval('SELECT count(*) FROM conversation_refs'))\n"
             "asyncio.run(main())"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert check.stdout.strip() == "50"
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0  # graceful: drain, workers, pool, database, exit 0
        assert not (workdir / "pg" / "postmaster.pid").exists()
    finally:
        if second.poll() is None:
            second.kill()


def test_a_second_serve_on_the_same_data_dir_refuses_and_names_the_first(workdir: Path) -> None:
    db_port, http_port = free_port(), free_port()
    first = start_service(workdir, db_port, http_port)
    try:
        wait_ready(first, f"http://127.0.0.1:{http_port}")
        second = start_service(workdir, db_port, free_port())
        try:
            _, stderr = second.communicate(timeout=60)
        finally:
            if second.poll() is None:
                second.kill()
        assert second.returncode == 1
        message = stderr.decode()
        assert f"(pid {first.pid}) is already running" in message, message
        assert str(workdir / "pg") in message
        # The first one is untouched and still serves.
        assert httpx.get(f"http://127.0.0.1:{http_port}/ready", timeout=5).status_code == 200
        first.send_signal(signal.SIGTERM)
        assert first.wait(30) == 0
    finally:
        if first.poll() is None:
            first.kill()


def test_make_run_says_where_to_go() -> None:
    """The first lines a newcomer reads: the pages to open and who to be."""
    settings = Settings(database_url="postgresql://unused/none", SERVER_PORT=18080)
    text = where_to_go(settings, demo=True)
    for expected in ("http://127.0.0.1:18080/docs", "http://127.0.0.1:18080/console",
                     f"ADMIN {ACME_ADMIN}", f"ADMIN {TECH_ADMIN}"):  # fmt: skip
        assert expected in text
    assert "ADMIN" not in where_to_go(settings, demo=False)  # no demo data, no identities
