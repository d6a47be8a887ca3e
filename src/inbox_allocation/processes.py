"""Process helpers shared by the launcher, the tests, stress, the benchmarks and tools/.

Everything that starts a throwaway server (PostgreSQL or the service) needs the same few
things: a free port, a directory the database user can enter, a child that dies with its
parent, a wait for readiness, and a look at what is still running afterwards.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

PR_SET_PDEATHSIG = 1


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (for a throwaway server: tests, benchmarks, stress)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def world_traversable_tempdir(prefix: str) -> Path:
    """A temp dir the unprivileged database user can enter (mkdtemp makes them 0700): the
    place for a throwaway server's data dir when running as root."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


def parent_death_signal(sig: int = signal.SIGTERM) -> Callable[[], None]:
    """A `preexec_fn` for `subprocess.Popen`: the child receives `sig` when the process that
    started it dies, even by SIGKILL, so a killed harness leaves no server behind. Create it
    in the parent (it records the parent's pid). It runs between fork and exec, after a
    `user=` switch (a credential change clears the signal, so it must come after it), and
    calls only prctl: safe in a forked child."""
    parent = os.getpid()

    def arm() -> None:  # pragma: no cover - runs in the child before exec
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return arm


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


class NotReady(AssertionError):
    """The service exited or did not become ready (an AssertionError: a failed test)."""


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
            raise NotReady(f"the service exited with {process.returncode}:\n{text}")
        try:
            if httpx.get(f"{base_url}/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise NotReady(f"the service was not ready within {timeout:.0f} s")
        time.sleep(0.1)
