"""The two load generators: wrk against the service, pgbench against PostgreSQL.

Both are C programs, so on a 2-core machine they take little of the CPU they share with
the system under test (each run reports how much: bench.sampler).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.infra import with_parent_death_signal
from inbox_allocation.db.launcher import EmbeddedPostgres

LUA_SCRIPT = Path(__file__).resolve().parent / "lua" / "bench.lua"
PGBENCH_SCRIPT = Path(__file__).resolve().parent / "sql" / "dequeue.pgbench"


@dataclass
class LoadResult:
    """One run of a load generator. Latencies in milliseconds."""

    tool: str
    connections: int
    duration_s: float
    requests: int
    latency_ms: dict[str, float]
    statuses: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def throughput(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def non_2xx(self) -> int:
        return sum(count for status, count in self.statuses.items() if not status.startswith("2"))

    def as_dict(self) -> dict[str, Any]:
        return {
            "tool": self.tool,
            "connections": self.connections,
            "duration_s": round(self.duration_s, 3),
            "requests": self.requests,
            "throughput_per_s": round(self.throughput, 1),
            "latency_ms": self.latency_ms,
            "statuses": self.statuses,
            "non_2xx": self.non_2xx,
            "errors": self.errors,
        }


def _seconds(duration_s: float) -> int:
    return max(1, math.ceil(duration_s))


def _run(
    args: list[str], env: dict[str, str], timeout: float, on_start: Callable[[int], None] | None
) -> subprocess.CompletedProcess[str]:
    """Run a load generator in its own process group; kill the group on any failure."""
    proc = subprocess.Popen(
        with_parent_death_signal(args),
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        if on_start is not None:
            on_start(proc.pid)
        stdout, stderr = proc.communicate(timeout=timeout)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    return subprocess.CompletedProcess(args, proc.returncode, stdout, stderr)


def run_wrk(
    wrk: str,
    base_url: str,
    *,
    mode: str,
    identities: Path,
    connections: int,
    duration_s: float,
    delay_ms: int = 0,
    query: str = "",
    run_tag: str = "wrk",
    phone_space: int = 250_000,
    on_start: Callable[[int], None] | None = None,
) -> LoadResult:
    env = {
        **os.environ,
        "BENCH_MODE": mode,
        "BENCH_IDENTITIES": str(identities),
        "BENCH_DELAY_MS": str(delay_ms),
        "BENCH_QUERY": query,
        "BENCH_RUN_TAG": run_tag,
        "BENCH_PHONE_SPACE": str(phone_space),
    }
    # wrk and pgbench take whole seconds.
    args = [wrk, "-t", str(connections), "-c", str(connections), "-d", f"{_seconds(duration_s)}s",
            "--timeout", "10s", "-s", str(LUA_SCRIPT), f"{base_url}/"]  # fmt: skip
    done = _run(args, env, timeout=duration_s + 60, on_start=on_start)
    line = next((x for x in done.stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    data = json.loads(line.removeprefix("BENCH_JSON "))
    latency = data["latency_us"]
    percentiles = {f"p{key}": value / 1000 for key, value in latency["percentiles"].items()}
    return LoadResult(
        tool="wrk",
        connections=connections,
        duration_s=data["duration_us"] / 1e6,
        requests=data["requests"],
        latency_ms={
            **{k: round(v, 3) for k, v in percentiles.items()},
            "mean": round(latency["mean"] / 1000, 3),
            "max": round(latency["max"] / 1000, 3),
        },
        statuses={str(k): int(v) for k, v in sorted(data["statuses"].items())},
        errors={k: int(v) for k, v in data["errors"].items() if v},
    )


def run_openloop(
    base_url: str,
    *,
    identities: Path,
    rate: float,
    duration_s: float,
    on_start: Callable[[int], None] | None = None,
) -> LoadResult:
    """bench.openloop at a fixed offered rate; latency from each request's scheduled time."""
    args = [sys.executable, "-m", "bench.openloop", f"{base_url}/", str(identities),
            "--rate", f"{rate:.1f}", "--duration", str(duration_s)]  # fmt: skip
    done = _run(args, dict(os.environ), timeout=duration_s + 60, on_start=on_start)
    line = next((x for x in done.stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"openloop failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    data = json.loads(line.removeprefix("BENCH_JSON "))
    return LoadResult(
        tool="openloop",
        connections=int(data["connections"]),
        duration_s=float(data["duration_s"]),
        requests=int(data["requests"]),
        latency_ms={k: round(float(v), 3) for k, v in data["latency_ms"].items()},
        statuses={str(k): int(v) for k, v in sorted(data["statuses"].items())},
        errors={k: int(v) for k, v in data["errors"].items() if v},
    )


def _percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(p / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[index]


def run_pgbench(
    server: EmbeddedPostgres,
    *,
    clients: int,
    duration_s: float,
    log_dir: Path,
    on_start: Callable[[int], None] | None = None,
) -> LoadResult:
    """The ceiling: pgbench's prepared dequeue over TCP on 127.0.0.1, like the service's."""
    c = server.config
    log_dir.mkdir(parents=True, exist_ok=True)
    for old in log_dir.glob("pgbench_log*"):
        old.unlink()
    threads = min(clients, os.cpu_count() or 1)
    args = [str(server.bin_dir / "pgbench"), "-n", "-M", "prepared", "-c", str(clients),
            "-j", str(threads), "-T", str(_seconds(duration_s)), "-f", str(PGBENCH_SCRIPT),
            "-h", c.host, "-p", str(c.port), "-U", c.user, "--log",
            "--log-prefix", str(log_dir / "pgbench_log"), c.database]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGPASSWORD"] = c.password
    done = _run(args, env, timeout=duration_s + 60, on_start=on_start)
    if done.returncode != 0:
        raise RuntimeError(f"pgbench failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    processed = int(re.search(r"actually processed: (\d+)", done.stdout).group(1))  # type: ignore[union-attr]
    failed_match = re.search(r"number of failed transactions: (\d+)", done.stdout)
    tps_match = re.search(r"tps = ([\d.]+) \(without initial connection time\)", done.stdout)
    latencies: list[float] = []
    for path in log_dir.glob("pgbench_log*"):
        for row in path.read_text().splitlines():
            parts = row.split()
            if len(parts) > 2 and parts[2].isdigit():
                latencies.append(int(parts[2]) / 1000)
    latencies.sort()
    tps = float(tps_match.group(1)) if tps_match else processed / duration_s
    return LoadResult(
        tool="pgbench",
        connections=clients,
        # pgbench's tps excludes connection set-up: express it as processed / duration.
        duration_s=processed / tps if tps else duration_s,
        requests=processed,
        latency_ms={
            **{f"p{p:g}": round(_percentile(latencies, p), 3) for p in (50, 90, 95, 99, 99.9)},
            "mean": round(sum(latencies) / len(latencies), 3) if latencies else 0.0,
            "max": round(latencies[-1], 3) if latencies else 0.0,
        },
        errors={"failed": int(failed_match.group(1))}
        if failed_match and int(failed_match.group(1))
        else {},
    )
