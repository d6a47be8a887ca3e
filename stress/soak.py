"""Soak sampling (every 10 s) and the verdict on the curves.

Sampled: RSS of every process of the service's process group (/proc/<pid>/status VmRSS),
the service's DB connections (pg_stat_activity, application_name `inbox-allocation`), the
conversation table (total relation size, live and dead tuples, vacuum runs, row and QUEUED
counts), grace rows and stored idempotency keys.

Rules (`evaluate`, a pure function; thresholds are module constants):
- warm-up: the first WARMUP_FRACTION of the run (at most WARMUP_MAX_SECONDS) is ignored;
  the baseline is the median of the samples in the WARMUP_WINDOW seconds after it, the end
  value the median of the last 3 samples;
- RSS, per process alive from baseline to end: end - baseline <= max(RSS_GROWTH_ABS_MIB,
  RSS_GROWTH_REL x baseline); a process that disappears (worker crash) fails;
- DB connections: never above workers x DB_MAX_CONNS; end <= baseline-window max + 2;
- dead tuples of conversation_refs: the peak of the second half <= max(DEAD_GROWTH x the
  peak of the first half, DEAD_FLOOR) — a sawtooth (autovacuum working) passes, linear
  growth (vacuum blocked) fails;
- conversation table (heap + indexes, constant row count): updates bloat it towards an
  equilibrium (index entries keyed by last_message_at are always added at one end of their
  index, and a page is reused only once all its entries are gone), so it passes when the
  second half stays close to half-time: end <= max(SIZE_GROWTH x mid, mid + SIZE_SLACK_BYTES),
  mid = median of the samples within 30 s of half-time, or when the growth is slowing down:
  the last third of the judged span grew at most CONVERGING x the first third. Linear
  growth (a leak of row versions) fails both;
- idempotency_keys grows by design (24 h TTL) and is only reported.
Autovacuum is not tuned: the embedded server runs PostgreSQL's defaults (printed in the
report).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import asyncpg

from stress.environment import Service
from stress.provision import INDEX_KEY_PREFIX, sample_database

SAMPLE_INTERVAL_SECONDS = 10.0
WARMUP_FRACTION = 0.25
WARMUP_MAX_SECONDS = 60.0
WARMUP_WINDOW_SECONDS = 30.0
RSS_GROWTH_ABS_MIB = 32.0
RSS_GROWTH_REL = 0.20
DEAD_GROWTH = 1.5
DEAD_FLOOR = 20_000
SIZE_GROWTH = 1.25
SIZE_SLACK_BYTES = 1024 * 1024
CONVERGING = 0.5


@dataclass
class Sample:
    t: float  # seconds since the load started
    requests: int
    rss_kb: dict[str, int]  # "<pid> <role>" -> kB
    db: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Verdict:
    name: str
    ok: bool
    detail: str


def _role(service: Service, pid: int, ppid: int, name: str) -> str:
    if pid == service.pid:
        return "main"
    if "resource_tracker" in name:
        return "resource-tracker"
    return "worker" if ppid == service.pid else "child"


async def take_sample(
    conn: asyncpg.Connection, service: Service, started: float, requests: int
) -> Sample:
    rss = {
        f"{p.pid} {_role(service, p.pid, p.ppid, p.name)}": p.rss_kb for p in service.processes()
    }
    return Sample(
        t=round(time.monotonic() - started, 1),
        requests=requests,
        rss_kb=rss,
        db=await sample_database(conn),
    )


async def sample_every(
    *,
    conn: asyncpg.Connection,
    service: Service,
    started: float,
    requests: Callable[[], int],
    load: asyncio.Future[Any],
    samples: list[Sample],
    interval: float = SAMPLE_INTERVAL_SECONDS,
) -> None:
    """Append a sample now and every `interval` seconds while `load` runs, and one after."""
    next_at = time.monotonic()
    while True:
        samples.append(await take_sample(conn, service, started, requests()))
        if load.done():
            return
        next_at += interval
        try:
            await asyncio.wait_for(asyncio.shield(load), max(0.0, next_at - time.monotonic()))
        except TimeoutError:
            continue
        except Exception:  # the load's own error is raised by its awaiter
            return


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else 0.0


def evaluate(samples: Sequence[Sample], *, pool_limit: int) -> list[Verdict]:
    if len(samples) < 4:
        return [Verdict("samples", False, f"only {len(samples)} samples: soak too short")]
    duration = samples[-1].t
    warmup = min(WARMUP_MAX_SECONDS, WARMUP_FRACTION * duration)
    base = [s for s in samples if warmup <= s.t <= warmup + WARMUP_WINDOW_SECONDS] or [
        next(s for s in samples if s.t >= warmup)
    ]
    tail = list(samples[-3:])
    verdicts = [_rss(base, tail), *_connections(samples, base, tail, pool_limit)]
    verdicts.append(_dead_tuples(samples, duration))
    verdicts.append(_table_size(samples, base, tail, duration))
    return verdicts


def _rss(base: Sequence[Sample], tail: Sequence[Sample]) -> Verdict:
    problems, lines = [], []
    for key in sorted(base[0].rss_kb):
        start = _median([s.rss_kb[key] for s in base if key in s.rss_kb]) / 1024
        present = [s.rss_kb[key] for s in tail if key in s.rss_kb]
        if len(present) < len(tail):
            problems.append(f"{key}: gone before the end (crashed or restarted)")
            continue
        end = _median(present) / 1024
        allowed = max(RSS_GROWTH_ABS_MIB, RSS_GROWTH_REL * start)
        lines.append(f"{key} {start:.1f}->{end:.1f} MiB ({end - start:+.1f})")
        if end - start > allowed:
            problems.append(f"{key}: grew {end - start:.1f} MiB > {allowed:.1f} MiB")
    new = sorted(set(tail[-1].rss_kb) - set(base[0].rss_kb))
    if new:
        problems.append(f"processes started during the soak (worker restart?): {new}")
    detail = "; ".join(lines) + (" | " + "; ".join(problems) if problems else "")
    return Verdict("rss", not problems, detail)


def _connections(
    samples: Sequence[Sample], base: Sequence[Sample], tail: Sequence[Sample], pool_limit: int
) -> list[Verdict]:
    peak = max(s.db.get("service_connections", 0) for s in samples)
    base_max = max(s.db.get("service_connections", 0) for s in base)
    end = max(s.db.get("service_connections", 0) for s in tail)
    return [
        Verdict("db-connections-limit", peak <= pool_limit, f"peak {peak} <= limit {pool_limit}"),
        Verdict(
            "db-connections-flat",
            end <= base_max + 2,
            f"baseline max {base_max}, end {end} (allowed {base_max + 2})",
        ),
    ]


def _dead_tuples(samples: Sequence[Sample], duration: float) -> Verdict:
    first = [s.db.get("dead_tuples", 0) for s in samples if s.t <= duration / 2]
    second = [s.db.get("dead_tuples", 0) for s in samples if s.t > duration / 2]
    first_peak, second_peak = max(first, default=0), max(second, default=0)
    allowed = max(DEAD_GROWTH * first_peak, DEAD_FLOOR)
    vacuums = samples[-1].db.get("vacuums", 0) - samples[0].db.get("vacuums", 0)
    return Verdict(
        "dead-tuples-bounded",
        second_peak <= allowed,
        f"peak first half {first_peak}, second half {second_peak} (allowed {allowed:.0f}); "
        f"vacuum runs during the soak {vacuums}",
    )


def _table_size(
    samples: Sequence[Sample], base: Sequence[Sample], tail: Sequence[Sample], duration: float
) -> Verdict:
    def size(group: Sequence[Sample], key: str = "conversation_bytes") -> float:
        return _median([s.db.get(key, 0) for s in group]) / 1024 / 1024

    mid = [s for s in samples if abs(s.t - duration / 2) <= 30] or list(samples)
    start, middle, end = size(base), size(mid), size(tail)
    allowed = max(SIZE_GROWTH * middle, middle + SIZE_SLACK_BYTES / 1024 / 1024)

    def size_near(t: float) -> float:
        return size([min(samples, key=lambda s: abs(s.t - t))])

    first, last = base[0].t, samples[-1].t
    third = (last - first) / 3
    early = size_near(first + third) - size_near(first)
    late = size_near(last) - size_near(last - third)
    slowing = early > 0 and late <= CONVERGING * early
    growth = sorted(
        ((size(tail, key) - size(base, key), key) for key in tail[-1].db
         if key.startswith(INDEX_KEY_PREFIX)),
        reverse=True,
    )  # fmt: skip
    grown = ", ".join(
        f"{key.removeprefix(INDEX_KEY_PREFIX)} +{mib:.2f}" for mib, key in growth[:3] if mib > 0
    )
    return Verdict(
        "conversation-table-size",
        end <= allowed or slowing,
        f"{start:.2f} (after warm-up) -> {middle:.2f} (half-time) -> {end:.2f} MiB at the end "
        f"(allowed {allowed:.2f}, or slowing down: grew {early:.2f} MiB in the first third of "
        f"the span, {late:.2f} in the last, allowed {CONVERGING * early:.2f}); "
        f"heap {size(base, 'heap_bytes'):.2f} -> "
        f"{size(tail, 'heap_bytes'):.2f}, indexes {size(base, 'index_bytes'):.2f} -> "
        f"{size(tail, 'index_bytes'):.2f}" + (f" (most: {grown} MiB)" if grown else ""),
    )


def curve_lines(samples: Sequence[Sample], points: int = 12) -> list[str]:
    """The sampled curves, at most `points` columns, for the report."""
    if not samples:
        return []
    step = max(1, (len(samples) - 1) // (points - 1)) if points > 1 else 1
    chosen = list(samples[::step])
    if chosen[-1] is not samples[-1]:
        chosen.append(samples[-1])
    lines = ["t(s)            " + " ".join(f"{s.t:>7.0f}" for s in chosen)]
    for key in sorted(samples[0].rss_kb):
        values = [f"{s.rss_kb[key] / 1024:>7.1f}" if key in s.rss_kb else "      -" for s in chosen]
        lines.append(f"rss MiB {key[:8]:<8}" + " " + " ".join(values))
    for name, scale, label in (
        ("service_connections", 1, "db conns       "),
        ("conversation_bytes", 1024 * 1024, "conv table MiB "),
        ("heap_bytes", 1024 * 1024, "  heap MiB     "),
        ("index_bytes", 1024 * 1024, "  indexes MiB  "),
        ("conversations", 1, "conv rows      "),
        ("queued", 1, "queued         "),
        ("dead_tuples", 1, "dead tuples    "),
        ("live_tuples", 1, "live tuples    "),
        ("grace_rows", 1, "grace rows     "),
        ("idempotency_rows", 1, "idem keys      "),
    ):
        if scale == 1:
            cells = [f"{s.db.get(name, 0):>7d}" for s in chosen]
        else:
            cells = [f"{s.db.get(name, 0) / scale:>7.2f}" for s in chosen]
        lines.append(f"{label} " + " ".join(cells))
    lines.append("requests        " + " ".join(f"{s.requests:>7d}" for s in chosen))
    return lines
