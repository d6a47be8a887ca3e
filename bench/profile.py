"""A py-spy profile of the service's workers under /allocate load, and its summary.

One worker is recorded as a flamegraph SVG (for people), the other in py-spy's raw
"collapsed stacks" format, which is summarised here: the share of samples per layer
(framework, the service's middleware, JSON, asyncpg, the event loop, socket syscalls …) and
the hottest functions. Both with native frames when py-spy can unwind them (Cython parts of
uvloop, asyncpg and httptools, and the system calls beneath them).

py-spy samples wall-clock stacks of threads that are not idle, so a thread blocked in a
system call that it is actually executing (write to a socket) counts, and one waiting in
epoll for the next event does not. uvicorn's per-worker ping thread (always blocked on a
pipe) is left out.
"""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.infra import with_parent_death_signal

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]*)(?::(?P<line>\d+))?\)$")

# (pattern on a Python frame's file, layer); first match wins.
LAYERS: list[tuple[str, str]] = [
    ("inbox_allocation/api/middleware.py", "service middleware (context, CORS, body)"),
    ("inbox_allocation/api/idempotency.py", "service middleware (idempotency)"),
    ("inbox_allocation/api/routing.py", "service routing"),
    ("inbox_allocation/observability/", "service metrics/tracing"),
    ("inbox_allocation/api/responses.py", "JSON rendering (orjson + envelope)"),
    ("inbox_allocation/api/schemas/", "JSON rendering (orjson + envelope)"),
    ("inbox_allocation/logging.py", "logging (structlog)"),
    ("inbox_allocation/db/pool.py", "service db wrapper"),
    ("inbox_allocation/", "service handlers/services"),
    ("asyncpg/pool.py", "asyncpg pool (acquire/release/reset)"),
    ("asyncpg/", "asyncpg"),
    ("fastapi/", "framework (FastAPI/Starlette)"),
    ("starlette/", "framework (FastAPI/Starlette)"),
    ("anyio/", "framework (FastAPI/Starlette)"),
    ("uvicorn/", "HTTP server (uvicorn/httptools)"),
    ("structlog/", "logging (structlog)"),
    ("logging/", "logging (structlog)"),
    ("prometheus_client/", "service metrics/tracing"),
    ("opentelemetry/", "service metrics/tracing"),
    ("pydantic", "pydantic"),
    ("orjson", "JSON rendering (orjson + envelope)"),
    ("asyncio/", "event loop (asyncio/uvloop)"),
]
SYSCALLS = {"write", "read", "send", "sendmsg", "sendto", "recv", "recvfrom", "recvmsg",
            "writev", "__libc_write", "__libc_read"}  # fmt: skip
IDLE_LEAVES = {"epoll_wait", "epoll_pwait", "epoll_pwait2", "select", "poll"}
IDLE_THREAD_MARKERS = ("always_pong", "Process.pong")

# Inclusive shares: samples whose stack passes through a function matching this pattern.
INCLUSIVE: list[tuple[str, str]] = [
    ("request handling in total (uvicorn run_asgi)", r"run_asgi \("),
    ("RequestContextMiddleware (ids, trace, access log, metrics)", r"RequestContextMiddleware"),
    ("access log line (structlog)", r"structlog/"),
    ("request metrics (prometheus_client)", r"prometheus_client/|observability/metrics.py"),
    ("IdempotencyMiddleware", r"IdempotencyMiddleware"),
    ("FastAPI dependency solving", r"solve_dependencies"),
    ("FastAPI/Starlette route matching", r"_match \(|\.matches \("),
    ("allocate endpoint (handler and below)", r"^allocate \(inbox_allocation"),
    ("asyncpg fetchrow/execute (incl. socket writes)", r"Connection\.(fetchrow|_execute) \("),
    ("asyncpg pool acquire", r"acquire \(asyncpg/pool.py"),
    ("asyncpg pool release + reset query", r"release \(asyncpg/pool.py|Connection.reset \("),
    ("response JSON (dumps + envelope)", r"inbox_allocation/api/responses.py"),
    ("socket write to the client (uvicorn)", r"RequestResponseCycle.send \("),
]


@dataclass
class ProfileSummary:
    samples: int = 0  # samples of the event-loop thread, idle included
    idle: int = 0  # of which waiting in epoll (nothing to do)
    layers: dict[str, int] = field(default_factory=dict)
    inclusive: dict[str, int] = field(default_factory=dict)
    top_self: list[tuple[str, int]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        busy = max(self.samples - self.idle, 1)
        # Without the socket system calls: on a box with more runnable threads than cores,
        # a worker that wakes its peer (PostgreSQL, wrk) with write() is often preempted
        # right there, runnable but not running, and py-spy still sees it "in write()".
        # /proc's stime tells how much of it is CPU; this view is the rest of the CPU.
        python = {k: v for k, v in self.layers.items() if not k.startswith("socket syscall")}
        python_total = max(sum(python.values()), 1)
        return {
            "samples": self.samples,
            "idle_samples": self.idle,
            "busy_samples": self.samples - self.idle,
            "layers_pct_of_busy": {k: round(100 * v / busy, 1) for k, v in self.layers.items()},
            "layers_pct_without_syscalls": {
                k: round(100 * v / python_total, 1) for k, v in python.items()
            },
            "inclusive_pct_of_busy": {
                k: round(100 * v / busy, 1) for k, v in self.inclusive.items()
            },
            "top_self_pct_of_busy": [(name, round(100 * n / busy, 1)) for name, n in self.top_self],
        }


def _parse(frame: str) -> tuple[str, str, bool]:
    """(function, file, is_python) of a py-spy frame `func (file:line)`."""
    match = _FRAME.match(frame)
    if match is None:
        return frame, "", False
    file = match.group("file")
    return match.group("func"), file, file.endswith(".py")


def _layer(frames: list[str]) -> str:
    syscall = _parse(frames[-1])[0] in SYSCALLS
    for frame in reversed(frames):
        _func, file, is_python = _parse(frame)
        if not is_python:
            if file == "loop.c" and not syscall:
                return "event loop (asyncio/uvloop)"
            continue
        for pattern, layer in LAYERS:
            if pattern in file:
                if syscall:
                    return f"socket syscall from {layer.split(' (')[0]}"
                return layer
        return "other Python (stdlib …)"
    return "native (no Python frame)"


def summarise(raw_path: Path, top: int = 15) -> ProfileSummary:
    summary = ProfileSummary()
    layers: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    patterns = [(name, re.compile(p)) for name, p in INCLUSIVE]
    for line in raw_path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        if any(marker in stack for marker in IDLE_THREAD_MARKERS):
            continue  # uvicorn's ping thread, blocked on its pipe
        frames = stack.split(";")
        summary.samples += count
        if _parse(frames[-1])[0] in IDLE_LEAVES:
            summary.idle += count
            continue
        layers[_layer(frames)] += count
        for name, pattern in patterns:
            if any(pattern.search(frame) for frame in frames):
                inclusive[name] += count
        # Self time: the leaf if it is Python or a system call, else the nearest Python frame
        # (time in CPython's C internals belongs to the Python code that called them).
        leaf_func, _leaf_file, leaf_python = _parse(frames[-1])
        if leaf_func in SYSCALLS:
            caller = next((f for f in reversed(frames) if _parse(f)[2]), "?")
            name = f"{leaf_func}() syscall ← {_short(caller)}"
        elif leaf_python:
            name = _short(frames[-1])
        else:
            caller = next((f for f in reversed(frames) if _parse(f)[2]), frames[-1])
            name = _short(caller)
        self_time[name] += count
    summary.layers = dict(layers.most_common())
    summary.inclusive = {name: inclusive[name] for name, _ in INCLUSIVE}
    summary.top_self = self_time.most_common(top)
    return summary


def _short(frame: str) -> str:
    func, file, _ = _parse(frame)
    return f"{func} ({file})" if file else func


def record(
    py_spy: str, pid: int, *, duration_s: float, output: Path, fmt: str, native: bool
) -> subprocess.Popen[bytes]:
    """Start `py-spy record` on a process; the caller waits for it."""
    args = [py_spy, "record", "--pid", str(pid), "--duration", str(round(duration_s)),
            "--rate", "100", "--format", fmt, "--output", str(output)]  # fmt: skip
    if native:
        args.append("--native")
    return subprocess.Popen(
        with_parent_death_signal(args),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
