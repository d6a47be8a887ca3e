"""Where the 2 cores went during a run, and how much memory the service's workers held.

A background thread reads /proc every `interval` seconds: the machine's busy time
(/proc/stat) and the CPU time of each process, attributed to a group (postgres = the
postmaster and its backends, service = the serve process and its uvicorn workers, loadgen =
wrk or pgbench). Busy time outside these groups is "other": the harness itself and whatever
else runs on the machine (on a shared box, other people's test suites). Processes that start
during the run (pgbench's backends) count from zero; the CPU a process spends between its
last sample and its exit is lost, which is why the interval is short.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.infra import read_stat

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count() or 1
GROUPS = ("postgres", "service", "loadgen")


def _boot_ticks_now() -> float:
    """Seconds since boot, in clock ticks (the unit of /proc/PID/stat starttime)."""
    return float(Path("/proc/uptime").read_text().split()[0]) * CLOCK_TICKS


def _machine_ticks() -> tuple[int, int]:
    """(total, idle) jiffies of all CPUs since boot; idle includes iowait."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in fields]
    total = sum(values[:8])  # user nice system idle iowait irq softirq steal
    return total, values[3] + values[4]


def _runqueue_wait_ns(pid: int) -> int | None:
    """Nanoseconds the process' main thread spent runnable on a run queue, not running."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None


def memory_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in KiB, or zeros when the process is gone."""
    rss = hwm = 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    except OSError:
        pass
    return rss, hwm


@dataclass
class CpuSplit:
    """CPU seconds per group over a window, and the window's length."""

    wall_s: float
    machine_busy_s: float
    group_s: dict[str, float]
    group_sys_s: dict[str, float]  # of group_s, the time spent in the kernel (system calls)
    # Time the groups' main threads were runnable but waiting for a CPU (/proc/PID/schedstat):
    # how much the 2 cores were oversubscribed for them.
    group_wait_s: dict[str, float]

    def as_percent_of_core(self) -> dict[str, float]:
        """Each group as % of one core (the machine's total is NCPU × 100 %)."""
        wall = max(self.wall_s, 1e-9)
        split = {name: 100 * seconds / wall for name, seconds in self.group_s.items()}
        known = sum(self.group_s.values())
        split["other"] = 100 * max(self.machine_busy_s - known, 0.0) / wall
        split["idle"] = max(100 * NCPU - 100 * self.machine_busy_s / wall, 0.0)
        return {name: round(value, 1) for name, value in split.items()}


@dataclass
class MemoryPeak:
    rss_kib: dict[int, int] = field(default_factory=dict)  # highest sampled VmRSS per pid
    hwm_kib: dict[int, int] = field(default_factory=dict)  # VmHWM (kernel's peak) per pid


class Sampler:
    """Samples while a run goes on: `with Sampler(...) as s: …; s.split`."""

    def __init__(
        self,
        groups: Callable[[], dict[str, list[int]]],
        watch_memory: Callable[[], list[int]],
        interval: float = 0.2,
    ) -> None:
        self.groups = groups
        self.watch_memory = watch_memory
        self.interval = interval
        self.memory = MemoryPeak()
        self.split: CpuSplit | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-sampler", daemon=True)
        self._seen: dict[int, tuple[int, int]] = {}  # pid → (utime, stime) at its last sample
        self._user_ticks: dict[str, int] = dict.fromkeys(GROUPS, 0)
        self._sys_ticks: dict[str, int] = dict.fromkeys(GROUPS, 0)
        self._seen_wait: dict[int, int] = {}  # pid → run-queue wait (ns) at its last sample
        self._wait_ns: dict[str, int] = dict.fromkeys(GROUPS, 0)
        self._start_boot_ticks = 0.0

    def __enter__(self) -> Sampler:
        self._started = time.monotonic()
        self._machine_start = _machine_ticks()
        self._start_boot_ticks = _boot_ticks_now()
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        wall = time.monotonic() - self._started
        total, idle = _machine_ticks()
        busy_ticks = (total - self._machine_start[0]) - (idle - self._machine_start[1])
        # /proc/stat sums every CPU: busy jiffies / ticks-per-second = busy CPU seconds.
        self.split = CpuSplit(
            wall_s=wall,
            machine_busy_s=busy_ticks / CLOCK_TICKS,
            group_s={
                name: (self._user_ticks[name] + self._sys_ticks[name]) / CLOCK_TICKS
                for name in GROUPS
            },
            group_sys_s={name: self._sys_ticks[name] / CLOCK_TICKS for name in GROUPS},
            group_wait_s={name: self._wait_ns[name] / 1e9 for name in GROUPS},
        )

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self) -> None:
        for name, pids in self.groups().items():
            for pid in pids:
                fields = read_stat(pid)
                if fields is None:
                    continue
                user, system = int(fields[11]), int(fields[12])  # utime, stime
                wait = _runqueue_wait_ns(pid)
                if pid not in self._seen:
                    # Started during the window: all its CPU is ours; before: from now on.
                    started_after = float(fields[19]) >= self._start_boot_ticks
                    self._seen[pid] = (0, 0) if started_after else (user, system)
                    if wait is not None:
                        self._seen_wait[pid] = 0 if started_after else wait
                if wait is not None and pid in self._seen_wait:
                    self._wait_ns[name] += wait - self._seen_wait[pid]
                    self._seen_wait[pid] = wait
                last_user, last_system = self._seen[pid]
                self._user_ticks[name] += user - last_user
                self._sys_ticks[name] += system - last_system
                self._seen[pid] = (user, system)
        for pid in self.watch_memory():
            rss, hwm = memory_kib(pid)
            if rss:
                self.memory.rss_kib[pid] = max(self.memory.rss_kib.get(pid, 0), rss)
                self.memory.hwm_kib[pid] = max(self.memory.hwm_kib.get(pid, 0), hwm)
