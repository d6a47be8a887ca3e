"""Shared test helpers (plain functions; fixtures live in conftest.py)."""

from __future__ import annotations

import ctypes
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import asyncpg
import httpx

# Re-exported: the tests take them from here, the launcher owns them.
from inbox_allocation.db.launcher import free_port, world_traversable_tempdir

__all__ = ["free_port", "world_traversable_tempdir"]

PR_SET_PDEATHSIG = 1


def die_with_pytest() -> None:  # pragma: no cover - runs in the child before exec
    """`preexec_fn` for a service a test starts: SIGTERM when the test process dies, so even a
    SIGKILLed pytest leaves no service (and so no database of the service's) behind."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (0 = state, 1 = ppid, 19 = start
    time), or None when no such process exists."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw.rsplit(")", 1)[1].split()


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def descendants(pid: int) -> dict[int, str]:
    """Every live process below `pid`: pid → its start time (clock ticks after boot), which
    tells a survivor from an unrelated process that reused the pid."""
    children: dict[int, list[tuple[int, str]]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None and fields[0] != "Z":
                children.setdefault(int(fields[1]), []).append((int(entry.name), fields[19]))
    found: dict[int, str] = {}
    stack = [pid]
    while stack:
        for child, started in children.get(stack.pop(), []):
            found[child] = started
            stack.append(child)
    return found


def survivors(processes: dict[int, str], grace_seconds: float = 3.0) -> list[str]:
    """The processes of `descendants()` still running after `grace_seconds` (time for ones
    already told to stop to finish exiting), each described by its command line."""
    deadline = time.monotonic() + grace_seconds
    while True:
        left = [
            pid
            for pid, started in processes.items()
            if (fields := _stat_fields(pid)) is not None
            and fields[0] != "Z"
            and fields[19] == started
        ]
        if not left or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    return [f"{pid}: {_cmdline(pid)}" for pid in left]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return "?"


def wait_ready(
    process: subprocess.Popen[bytes],
    base_url: str,
    *,
    timeout: float = 90.0,
    output: Callable[[], str] | None = None,
) -> None:
    """Poll `GET /ready` of a service started as `process` until it answers 200; fail at once
    if the process exits (with its stderr, or `output()` when given) or after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            if output is not None:
                text = output()
            else:
                text = process.stderr.read().decode(errors="replace") if process.stderr else ""
            raise AssertionError(f"the service exited with {process.returncode}:\n{text}")
        try:
            if httpx.get(f"{base_url}/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"the service was not ready within {timeout:.0f} s")
        time.sleep(0.1)


async def is_citus(db: asyncpg.Pool) -> bool:
    """Whether the database is a Citus coordinator (TEST_DB_ENGINE=citus)."""
    found: bool = await db.fetchval(
        "SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'citus')"
    )
    return found


async def lock_waiters(db: asyncpg.Pool, application_name: str = "inbox-allocation") -> int:
    """How many sessions of `application_name` are waiting for a lock.

    Plain PostgreSQL shows it in pg_stat_activity. On Citus the waiting happens on the node
    that holds the rows (a worker; every node for a reference table) while the coordinator's
    session only shows that it waits for that node, so the count comes from
    citus_lock_waits, the cluster-wide wait graph, which names sessions by global pid.
    """
    if await is_citus(db):
        query = (
            "SELECT count(DISTINCT w.waiting_gpid) FROM citus_lock_waits w "
            "JOIN citus_stat_activity a ON a.global_pid = w.waiting_gpid "
            "WHERE a.application_name = $1"
        )
    else:
        query = (
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE application_name = $1 AND wait_event_type = 'Lock'"
        )
    count: int = await db.fetchval(query, application_name)
    return count
