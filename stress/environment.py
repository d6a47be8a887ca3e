"""The processes under test: a fresh embedded PostgreSQL (or a Citus cluster of a coordinator
and two workers, `--engine citus`) and the service (2+ workers).

The service runs as `python -m inbox_allocation serve` in its own session and process group,
with a parent-death signal, so neither a crash of the harness nor a stuck worker leaves a
process behind: `Service.stop()` sends SIGTERM, waits, and SIGKILLs whatever of the group
survives (and says so).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from inbox_allocation.db import migrations
from inbox_allocation.db.citus_cluster import CitusCluster
from inbox_allocation.db.launcher import (
    EmbeddedPostgres,
    LauncherConfig,
)
from inbox_allocation.processes import free_port, parent_death_signal, world_traversable_tempdir

REPO_ROOT = Path(__file__).resolve().parents[1]


ENGINES = ("postgres", "citus")


@dataclass
class Database:
    server: EmbeddedPostgres | CitusCluster  # the service talks to the coordinator of a cluster
    base: Path

    @property
    def dsn(self) -> str:
        return self.server.dsn

    def stop(self) -> None:
        try:
            self.server.stop()
        finally:
            shutil.rmtree(self.base, ignore_errors=True)


def start_database(settings: dict[str, str] | None = None, engine: str = "postgres") -> Database:
    """Fresh cluster (fsync off), migrated to head. Must run on the main thread before any
    other thread exists (the launcher's parent-death signal is per thread)."""
    base = world_traversable_tempdir("inbox-stress-")
    pg_bin = os.environ.get("PG_BIN_DIR")
    server: EmbeddedPostgres | CitusCluster
    if engine == "citus":
        server = CitusCluster(
            base_dir=base,
            user="stress",
            password="stress",  # noqa: S106 - a throwaway local cluster
            database="stress",
            fsync=False,
            bin_dir=Path(pg_bin) if pg_bin else None,
            settings={"max_connections": "300", **(settings or {})},
        )
        return _migrated(server, base)
    config = LauncherConfig(
        data_dir=base / "pg",
        port=free_port(),
        user="stress",
        password="stress",  # noqa: S106 - a throwaway local cluster
        database="stress",
        bin_dir=Path(pg_bin) if pg_bin else None,
        fsync=False,
        settings={"max_connections": "300", **(settings or {})},
    )
    return _migrated(EmbeddedPostgres(config), base)


def _migrated(server: EmbeddedPostgres | CitusCluster, base: Path) -> Database:
    try:
        server.start()
    except BaseException:
        shutil.rmtree(base, ignore_errors=True)
        raise
    database = Database(server, base)
    try:
        migrations.upgrade(server.dsn)
    except BaseException:
        database.stop()
        raise
    return database


@dataclass(frozen=True)
class ProcInfo:
    pid: int
    ppid: int
    pgrp: int
    name: str
    rss_kb: int


def _read_proc(pid: int) -> ProcInfo | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return None
    rest = stat[stat.rfind(")") + 2 :].split()
    state, ppid, pgrp = rest[0], int(rest[1]), int(rest[2])
    if state == "Z":
        return None
    rss = 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    return ProcInfo(pid=pid, ppid=ppid, pgrp=pgrp, name=cmdline.strip()[:120], rss_kb=rss)


def process_group(pgrp: int) -> list[ProcInfo]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            info = _read_proc(int(entry.name))
            if info is not None and info.pgrp == pgrp:
                found.append(info)
    return sorted(found, key=lambda p: p.pid)


@dataclass
class StopResult:
    exit_code: int | None
    seconds: float
    killed: bool  # SIGKILL was needed
    survivors: list[str] = field(default_factory=list)  # processes left after the main exited


class Service:
    """`python -m inbox_allocation serve` against `dsn`, `workers` uvicorn worker processes."""

    def __init__(
        self,
        *,
        dsn: str,
        log_path: Path,
        workers: int,
        grace_period: str,
        grace_interval: str,
        db_max_conns: int | None = None,
    ) -> None:
        self.dsn = dsn
        self.log_path = log_path
        self.workers = workers
        self.port = free_port()
        self.env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(
                ("DB_", "DATABASE_URL", "SERVER_", "EMBEDDED_", "GRACE_", "IDEMPOTENCY_", "OTEL_")
            )
        }
        self.env.update(
            DATABASE_URL=dsn,
            SERVER_HOST="127.0.0.1",
            SERVER_PORT=str(self.port),
            SERVER_WORKERS=str(workers),
            GRACE_PERIOD_DURATION=grace_period,
            GRACE_PERIOD_INTERVAL=grace_interval,
            LOG_LEVEL="warning",
        )
        if db_max_conns is not None:
            self.env["DB_MAX_CONNS"] = str(db_max_conns)
            self.env["DB_MIN_CONNS"] = str(min(5, db_max_conns))  # the default 5 must fit
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 90.0) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "inbox_allocation", "serve"],
                cwd=REPO_ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: stop() can reach every worker
                preexec_fn=parent_death_signal(),  # noqa: PLW1509 - only prctl, no locks
            )
        deadline = time.monotonic() + timeout
        ready = 0
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"service exited with {self.process.returncode}; see {self.log_path}"
                )
            try:
                ok = httpx.get(f"{self.base_url}/ready", timeout=2).status_code == 200
            except httpx.HTTPError:
                ok = False
            ready = ready + 1 if ok else 0
            # Every worker must be up: count the worker processes, then a few answers in a row.
            if ready >= 3 and len(self.workers_info()) >= self.workers:
                return
            time.sleep(0.2)
        raise RuntimeError(f"service not ready within {timeout:g}s; see {self.log_path}")

    def processes(self) -> list[ProcInfo]:
        return process_group(self.pid) if self.process is not None else []

    def workers_info(self) -> list[ProcInfo]:
        """The uvicorn worker processes (children of the main process running Python)."""
        return [
            p
            for p in self.processes()
            if p.ppid == self.pid and "python" in p.name and "resource_tracker" not in p.name
        ]

    def stop(self, timeout: float = 30.0) -> StopResult:
        if self.process is None:
            return StopResult(exit_code=None, seconds=0.0, killed=False)
        started = time.monotonic()
        pgrp = self.process.pid
        killed = False
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code: int | None = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            killed = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgrp, signal.SIGKILL)
            code = self.process.wait(10)
        deadline = time.monotonic() + 5
        while process_group(pgrp) and time.monotonic() < deadline:
            time.sleep(0.1)
        survivors = [f"{p.pid} {p.name}" for p in process_group(pgrp)]
        if survivors:
            killed = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgrp, signal.SIGKILL)
        return StopResult(
            exit_code=code, seconds=time.monotonic() - started, killed=killed, survivors=survivors
        )
