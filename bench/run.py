"""`python -m bench.run`: /allocate against the PostgreSQL ceiling, in one self-contained run.

It starts its own PostgreSQL (fsync on) and the service (one uvicorn worker per core) on
127.0.0.1, generates the data set, and measures in this order:

1. depth    — /allocate latency at each queue depth (default 10k, 100k, 1M), paced load;
2. ceiling + allocate — per client count (default 8, 32, 64), pgbench's single-statement
   dequeue and then /allocate through wrk, interleaved so that each pair sees the same
   background load, on the deepest queue;
3. cycle    — allocate + resolve cycles at 32 operators;
   weights  — /allocate at 32 operators with and without PUT /tenant/weights on tenant 1
   one second in (throughput ratio, time until every key carries the new weights, the
   allocation order checked against the formula afterwards);
4. profile  — py-spy on the workers under /allocate at 32 operators (a separate run: the
   sampler slows the worker down);
5. ingest, list, search — POST /conversations, GET /conversations, GET /search on ≥ 1M rows.

Every run that takes conversations is followed by a re-queue (+ VACUUM), so each starts from
the same queue. Results: bench/results/<timestamp>.{json,md}, <timestamp>-latency-vs-depth.png
and the profile (<timestamp>-allocate-profile.svg / .txt). Child processes run in their own
process groups and are stopped on every exit path; the temp dir is removed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from bench import citus_engines, data, loadgen, profile, report, variants
from bench.data import Dataset
from bench.infra import (
    PROJECT_ROOT,
    BenchError,
    Service,
    ensure_python_tools,
    ensure_wrk,
    log,
    make_workdir,
    process_tree,
    py_spy_path,
    start_postgres,
    subtree,
)
from bench.loadgen import LoadResult
from bench.sampler import CpuSplit, Sampler, memory_kib
from inbox_allocation.db import migrations
from inbox_allocation.db.launcher import EmbeddedPostgres

SCENARIOS = (
    "depth", "ceiling", "allocate", "openloop", "auth", "cycle", "profile", "weights", "ingest",
    "list", "search", "events",
)  # fmt: skip
MIB = 1024 * 1024
# (name, query, connections: None = --endpoint-clients, warm-up). sort=priority lists the
# queue from the per-inbox allocation indexes (target: p50 <= 20 ms at 1M queued).
LIST_QUERIES: tuple[tuple[str, str, int | None, bool], ...] = (
    ("list newest", "per_page=50", None, True),
    ("list by priority, QUEUED", "per_page=50&sort=priority&state=QUEUED", None, True),
    ("list one inbox, newest", "per_page=50&inbox_id={inbox}", None, True),
)
# The weights scenario: tenant 1 changes its weights while /allocate runs.
WEIGHTS_TENANT = 1
WEIGHTS_CHANGE = {"alpha": 0.2, "beta": 0.8}
WEIGHTS_CHECK_OPERATOR = 5  # tenant 1, 5 inboxes
ALLOCATE_STATEMENT_PREFIX = "WITH weights AS"


def _int_list(text: str) -> list[int]:
    return [int(part.replace("_", "")) for part in text.split(",") if part.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description="Benchmark /allocate against a pgbench ceiling on the same PostgreSQL.",
    )
    parser.add_argument(
        "--scenarios",
        default="all",
        help=f"comma-separated subset of {','.join(SCENARIOS)} (default all)",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=10.0,
        help="seconds per ceiling/allocate/cycle/ingest run (default 10)",
    )
    parser.add_argument(
        "--short-duration",
        type=float,
        default=5.0,
        help="seconds per list and search run (default 5)",
    )
    parser.add_argument(
        "--depth-duration", type=float, default=8.0, help="seconds per queue-depth run (default 8)"
    )
    parser.add_argument(
        "--depth-delay-ms",
        type=int,
        default=50,
        help="pause after each response in depth runs (default 50)",
    )
    parser.add_argument(
        "--depth-operators",
        type=int,
        default=8,
        help="concurrent operators in depth runs (default 8)",
    )
    parser.add_argument(
        "--profile-duration",
        type=float,
        default=10.0,
        help="seconds of py-spy sampling (default 10)",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=2.0,
        help="seconds of unmeasured load before each run (default 2)",
    )
    parser.add_argument(
        "--clients",
        default="8,32,64",
        help="concurrent operators / pgbench clients (default 8,32,64)",
    )
    parser.add_argument("--cycle-clients", type=int, default=32)
    parser.add_argument(
        "--events-seconds",
        type=float,
        default=10.0,
        help="seconds per phase of the 1,000-reader event-stream run (default 10)",
    )
    parser.add_argument(
        "--endpoint-clients",
        type=int,
        default=8,
        help="connections for list and search (default 8)",
    )
    parser.add_argument("--ingest-clients", type=int, default=32)
    parser.add_argument(
        "--depths",
        default="10000,100000,1000000",
        help="queue depths to generate and measure (default 10k,100k,1M)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 2,
        help="uvicorn workers (default: the number of cores)",
    )
    parser.add_argument("--results-dir", type=Path, default=PROJECT_ROOT / "bench" / "results")
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG")
    parser.add_argument(
        "--no-native",
        action="store_true",
        help="profile Python frames only (no --native unwinding)",
    )
    parser.add_argument(
        "--engines",
        default="postgres,citus",
        help="postgres: the run above; citus: also /allocate at 32 clients on a Citus "
        "cluster (coordinator + 2 workers) at the smallest depth, after it "
        "(bench/citus_engines.py)",
    )
    parser.add_argument(
        "--keep-workdir",
        action="store_true",
        help="leave the temp dir (database, logs) for inspection",
    )
    args = parser.parse_args(argv)
    chosen = SCENARIOS if args.scenarios == "all" else tuple(args.scenarios.split(","))
    unknown = set(chosen) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    args.scenarios = chosen
    args.engines = tuple(args.engines.split(","))
    if set(args.engines) - {"postgres", "citus"}:
        parser.error("--engines takes postgres and/or citus")
    args.clients = _int_list(args.clients)
    args.depths = sorted(_int_list(args.depths))
    if not args.depths:
        parser.error("--depths needs at least one depth")
    return args


def _uncommitted_changes() -> bool:
    """Changes to tracked files (untracked ones, like this run's own results, do not count)."""
    return bool(_git("status", "--porcelain", "--untracked-files=no"))


def _git(*args: str) -> str:
    try:
        git = shutil.which("git")
        if git is None:
            return ""
        done = subprocess.run([git, *args], cwd=PROJECT_ROOT, capture_output=True,
                              text=True, check=False, timeout=10)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


class Bench:
    """The measured runs; each returns a JSON-ready record."""

    def __init__(
        self,
        *,
        args: argparse.Namespace,
        server: EmbeddedPostgres,
        service: Service,
        dataset: Dataset,
        wrk: str,
        workdir: Path,
    ) -> None:
        self.args = args
        self.server = server
        self.service = service
        self.dataset = dataset
        self.wrk = wrk
        self.workdir = workdir
        self.workers = service.worker_pids()
        self.rss_sampled_kib: dict[int, int] = {}
        self.requeue_s = 0.0
        self.max_other_pct = 0.0

    # -- plumbing ------------------------------------------------------------------------

    def _groups(self, loadgen_pid: int | None) -> dict[str, list[int]]:
        tree = process_tree()
        groups: dict[str, list[int]] = {"postgres": [], "service": [], "loadgen": []}
        if self.server.pid:
            groups["postgres"] = subtree(tree, self.server.pid)
        if self.service.process is not None:
            groups["service"] = subtree(tree, self.service.process.pid)
        if loadgen_pid is not None:
            groups["loadgen"] = subtree(tree, loadgen_pid)
        return groups

    def measure(
        self, name: str, run: Callable[[Callable[[int], None]], LoadResult]
    ) -> dict[str, Any]:
        """Run a load generator under the CPU/memory sampler and pg_stat_statements."""
        loadgen_pid: list[int] = []
        self.dataset.reset_statement_stats()
        with Sampler(
            groups=lambda: self._groups(loadgen_pid[0] if loadgen_pid else None),
            watch_memory=lambda: self.workers,
        ) as sampler:
            result = run(loadgen_pid.append)
        split = sampler.split
        assert split is not None
        for pid, kib in sampler.memory.rss_kib.items():
            self.rss_sampled_kib[pid] = max(self.rss_sampled_kib.get(pid, 0), kib)
        record = result.as_dict()
        record["name"] = name
        record["cpu_pct_of_core"] = split.as_percent_of_core()
        record["cpu_s"] = {k: round(v, 3) for k, v in split.group_s.items()}
        record["runqueue_wait_pct"] = {
            k: round(100 * v / split.wall_s, 1) for k, v in split.group_wait_s.items()
        }
        record["cpu_us_per_request"] = self._per_request(split, result.requests)
        record["statements"] = self.dataset.statement_stats()
        totals = self.dataset.statement_totals()
        record["server_per_request"] = {
            k: round(v / result.requests, 3 if k == "exec_ms" else 2)
            for k, v in totals.items()
            if result.requests
        }
        self.max_other_pct = max(self.max_other_pct, record["cpu_pct_of_core"]["other"])
        lat = result.latency_ms
        log(f"{name}: {result.throughput:.0f}/s, p50 {lat['p50']:.2f} ms, p99 {lat['p99']:.2f} ms,"
            f" non-2xx {result.non_2xx}, CPU % {record['cpu_pct_of_core']}")  # fmt: skip
        return record

    @staticmethod
    def _per_request(split: CpuSplit, requests: int) -> dict[str, float]:
        if not requests:
            return {}
        per = {k: 1e6 * v / requests for k, v in split.group_s.items()}

        def sys_pct(group: str) -> float:
            total = split.group_s[group]
            return 100 * split.group_sys_s[group] / total if total else 0.0

        return {
            **{k: round(v, 1) for k, v in per.items()},
            "total": round(sum(per.values()), 1),
            "service_sys_pct": round(sys_pct("service"), 1),
            "postgres_sys_pct": round(sys_pct("postgres"), 1),
        }

    def requeue(self) -> None:
        changed, seconds = self.dataset.requeue()
        self.requeue_s += seconds
        log(f"re-queued {changed} conversations + VACUUM in {seconds:.1f} s")

    def _identities(self, name: str, operators: list[int]) -> Path:
        return data.write_identities(self.workdir / f"{name}.ids", operators)

    def _wrk(self, mode: str, ids: Path, connections: int, duration: float,
             **kwargs: Any) -> Callable[[Callable[[int], None]], LoadResult]:  # fmt: skip
        def run(on_start: Callable[[int], None]) -> LoadResult:
            return loadgen.run_wrk(
                self.wrk, self.service.base_url, mode=mode, identities=ids,
                connections=connections, duration_s=duration, on_start=on_start,
                phone_space=data.PHONE_SPACE, **kwargs,
            )  # fmt: skip

        return run

    def _warmup(self, mode: str, ids: Path, connections: int, **kwargs: Any) -> None:
        if self.args.warmup > 0:
            self._wrk(mode, ids, connections, self.args.warmup, **kwargs)(lambda _pid: None)

    @staticmethod
    def _statement_mean(record: dict[str, Any]) -> float:
        for statement in record["statements"]:
            if str(statement["query"]).startswith(ALLOCATE_STATEMENT_PREFIX):
                return float(statement["mean_ms"])
        return 0.0

    # -- scenarios -------------------------------------------------------------------------

    def depth(self, depth: int) -> dict[str, Any]:
        operators = data.operators_for(self.args.depth_operators)
        ids = self._identities(f"depth-{depth}", operators)
        delay = self.args.depth_delay_ms
        self._warmup("allocate", ids, len(operators), delay_ms=delay)
        self.requeue()
        explain = self.dataset.explain_allocate(k=5)  # operator 5: 5 inboxes
        queued = self.dataset.queued()
        record = self.measure(
            f"depth {depth:,}",
            self._wrk("allocate", ids, len(operators), self.args.depth_duration, delay_ms=delay),
        )
        record["depth"] = depth
        record["depth_before"] = queued
        record["depth_after"] = self.dataset.queued()
        record["delay_ms"] = delay
        record["explain"] = explain
        record["allocate_statement_mean_ms"] = self._statement_mean(record)
        self.requeue()
        return record

    def ceiling(self, clients: int) -> dict[str, Any]:
        log_dir = self.workdir / "pgbench"

        def run(on_start: Callable[[int], None], duration: float) -> LoadResult:
            return loadgen.run_pgbench(
                self.server, clients=clients, duration_s=duration, log_dir=log_dir,
                on_start=on_start,
            )  # fmt: skip

        if self.args.warmup > 0:
            run(lambda _pid: None, max(1.0, self.args.warmup))
        record = self.measure(f"ceiling {clients}", lambda cb: run(cb, self.args.duration))
        self.requeue()
        return record

    def allocate(self, clients: int) -> dict[str, Any]:
        ids = self._identities(f"allocate-{clients}", data.operators_for(clients))
        self._warmup("allocate", ids, clients)
        record = self.measure(
            f"allocate {clients}", self._wrk("allocate", ids, clients, self.args.duration)
        )
        record["allocate_statement_mean_ms"] = self._statement_mean(record)
        self.requeue()
        return record

    def openloop(self, clients: int, peak_per_s: float) -> dict[str, Any]:
        """/allocate at a fixed offered load of half the measured peak, open loop: each
        request is sent at its scheduled time and its latency counts from then."""
        ids = self._identities(f"openloop-{clients}", data.operators_for(clients))
        rate = max(1.0, peak_per_s / 2)
        self._warmup("allocate", ids, clients)
        record = self.measure(
            f"allocate open loop at {rate:.0f}/s",
            lambda on_start: loadgen.run_openloop(
                self.service.base_url, identities=ids, rate=rate,
                duration_s=self.args.duration, on_start=on_start,
            ),
        )  # fmt: skip
        record["offered_per_s"] = round(rate, 1)
        record["peak_per_s"] = round(peak_per_s, 1)
        self.requeue()
        return record

    def cycle(self, clients: int) -> dict[str, Any]:
        ids = self._identities(f"cycle-{clients}", data.operators_for(clients))
        self._warmup("cycle", ids, clients)
        record = self.measure(
            f"allocate+resolve {clients}", self._wrk("cycle", ids, clients, self.args.duration)
        )
        self.requeue()
        return record

    def profile(self, clients: int, stem: str, results_dir: Path) -> dict[str, Any]:
        py_spy = py_spy_path()
        if py_spy is None:
            raise BenchError("py-spy is not installed")
        ids = self._identities(f"profile-{clients}", data.operators_for(clients))
        duration = self.args.profile_duration
        self._warmup("allocate", ids, clients)
        svg = results_dir / f"{stem}-allocate-profile.svg"
        raw = results_dir / f"{stem}-allocate-profile.txt"
        native = not self.args.no_native
        for attempt in ("native", "python") if native else ("python",):
            use_native = attempt == "native"
            # One worker as a flamegraph, the other as raw stacks for the summary (with a
            # single worker: raw only; py-spy cannot attach twice to one process).
            targets = [(self.workers[-1], raw, "raw")]
            if len(self.workers) > 1:
                targets.append((self.workers[0], svg, "flamegraph"))
            spies = [
                profile.record(py_spy, pid, duration_s=duration, output=output, fmt=fmt,
                               native=use_native)
                for pid, output, fmt in targets
            ]  # fmt: skip
            record = self.measure(
                f"allocate {clients} under py-spy",
                self._wrk("allocate", ids, clients, duration + 1),
            )
            outputs = []
            for spy in spies:
                try:
                    out, _ = spy.communicate(timeout=duration + 60)
                except subprocess.TimeoutExpired:
                    spy.kill()
                    out, _ = spy.communicate()
                outputs.append(out.decode(errors="replace").strip())
            self.requeue()
            if raw.exists() and raw.stat().st_size > 0:
                break
            log(f"py-spy ({attempt}) failed: {outputs[0][-500:]}")
            native = False
        if not raw.exists():
            raise BenchError("py-spy could not record the workers")
        summary = profile.summarise(raw)
        return {
            "connections": clients,
            "duration_s": duration,
            "native": native,
            "possible_samples": int(duration * 100),
            "svg": svg.name if svg.exists() else None,
            "raw": raw.name,
            "worker_pids": {"raw": self.workers[-1], "flamegraph": self.workers[0]},
            "load_under_profiler": record,
            "summary": summary.as_dict(),
        }

    def weights(self, clients: int) -> dict[str, Any]:
        """PUT /tenant/weights on tenant 1 (half the queue) one second into an /allocate run
        at `clients` operators of both tenants, against the same run without it: allocate
        throughput ratio (target >= 0.8), 5xx, time until no key of the old weights is
        left, then the allocation order checked against the contract's formula."""
        admin = self.dataset.ensure_admin(WEIGHTS_TENANT)
        ids = self._identities(f"weights-{clients}", data.operators_for(clients))
        self._warmup("allocate", ids, clients)
        baseline = self.measure(
            f"allocate {clients} (weights baseline)",
            self._wrk("allocate", ids, clients, self.args.duration),
        )
        self.requeue()
        change: dict[str, Any] = {}

        def put_weights() -> None:
            time.sleep(1.0)
            started = time.monotonic()
            change["status"] = _http(
                self.service.base_url, "PUT", "/api/v1/tenant/weights",
                tenant=data.tenant_id(WEIGHTS_TENANT), operator=admin, body=WEIGHTS_CHANGE,
            )[0]  # fmt: skip
            change["put_s"] = round(time.monotonic() - started, 3)
            while self.dataset.stale_keys(WEIGHTS_TENANT) and time.monotonic() - started < 900:
                time.sleep(0.5)
            change["caught_up_s"] = round(time.monotonic() - started, 1)

        changer = threading.Thread(target=put_weights, name="weights-change")
        changer.start()
        during = self.measure(
            f"allocate {clients} while the weights change",
            self._wrk("allocate", ids, clients, self.args.duration),
        )
        changer.join()
        best = self.dataset.best_priority(WEIGHTS_TENANT, WEIGHTS_CHECK_OPERATOR)
        status, body = _http(
            self.service.base_url, "POST", "/api/v1/allocate",
            tenant=data.tenant_id(WEIGHTS_TENANT),
            operator=data.operator_id(WEIGHTS_CHECK_OPERATOR), body=None,
        )  # fmt: skip
        got = float(body["data"]["priority_score"]) if status == 200 else None
        exact = got is not None and got >= best - 1e-4
        record: dict[str, Any] = {
            "clients": clients,
            "tenant_conversations": int(
                self.dataset.psql.run(
                    "SELECT count(*) FROM conversation_refs"
                    f" WHERE tenant_id = '{data.tenant_id(WEIGHTS_TENANT)}';"
                )
            ),
            "baseline": baseline,
            "during": during,
            "change": change,
            "throughput_ratio": round(during["throughput_per_s"] / baseline["throughput_per_s"], 3)
            if baseline["throughput_per_s"]
            else None,
            "stale_keys_after": self.dataset.stale_keys(WEIGHTS_TENANT),
            "keys_mismatched_after": self.dataset.keys_mismatched(WEIGHTS_TENANT),
            "order_check": {
                "best_by_formula": best,
                "allocated_priority": got,
                "exact": exact,
            },
        }
        log(f"weights: ratio {record['throughput_ratio']}, change {change}, "
            f"order exact {exact}")  # fmt: skip
        self._http_reset_weights(admin)
        self.requeue()
        return record

    def _http_reset_weights(self, admin: str) -> None:
        _http(self.service.base_url, "PUT", "/api/v1/tenant/weights",
              tenant=data.tenant_id(WEIGHTS_TENANT), operator=admin,
              body={"alpha": 0.5, "beta": 0.5})  # fmt: skip

    def ingest(self) -> dict[str, Any]:
        clients = self.args.ingest_clients
        ids = data.write_manager_identities(self.workdir / "managers.ids", clients)
        self._warmup("ingest", ids, clients, run_tag="warm")
        record = self.measure(
            "ingest", self._wrk("ingest", ids, clients, self.args.duration, run_tag="ingest")
        )
        record["request"] = "POST /api/v1/conversations (new conversation, 201)"
        return record

    def endpoints(self) -> list[dict[str, Any]]:
        clients = self.args.endpoint_clients
        ids = data.write_manager_identities(self.workdir / "managers-read.ids", clients)
        records = []
        if "list" in self.args.scenarios:
            for name, query, connections, warm in LIST_QUERIES:
                conns = connections or clients
                duration = self.args.short_duration if warm else 2 * self.args.short_duration
                if warm:
                    self._warmup("list", ids, conns, query=query)
                record = self.measure(name, self._wrk("list", ids, conns, duration, query=query))
                record["request"] = f"GET /api/v1/conversations?{query}"
                records.append(record)
        if "search" in self.args.scenarios:
            self._warmup("search", ids, clients)
            record = self.measure(
                "search by phone", self._wrk("search", ids, clients, self.args.short_duration)
            )
            record["request"] = "GET /api/v1/search?phone=%2B1415NNNNNNN (0 or 4 hits)"
            records.append(record)
        return records

    def rss(self, idle_kib: dict[int, int]) -> dict[str, Any]:
        workers = []
        for pid in self.workers:
            rss, hwm = memory_kib(pid)
            workers.append({
                "pid": pid,
                "idle_mb": idle_kib.get(pid, 0) * 1024 / report.MB,
                "sampled_max_mb": max(self.rss_sampled_kib.get(pid, 0), rss) * 1024 / report.MB,
                "peak_mb": hwm * 1024 / report.MB,
                "rss_at_end_mb": rss * 1024 / report.MB,
            })  # fmt: skip
        return {"workers": workers, "unit": "MB = 10^6 bytes; VmHWM = the kernel's peak RSS"}


def _http(
    base_url: str, method: str, path: str, *, tenant: str, operator: str, body: Any
) -> tuple[int, Any]:
    """One request with the identity headers; (status, parsed JSON body)."""
    request = urllib.request.Request(  # noqa: S310 - the bench's own service on 127.0.0.1
        base_url + path, method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"X-Tenant-ID": tenant, "X-Operator-ID": operator,
                 "Content-Type": "application/json"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def _raise_on_sigterm(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run(args: argparse.Namespace) -> int:  # noqa: PLR0912, PLR0915 - one linear script
    started = time.monotonic()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    results: dict[str, Any] = {"notes": []}
    notes: list[str] = results["notes"]
    wrk, installed = ensure_wrk()
    notes += installed
    notes += ensure_python_tools(
        need_plot=not args.no_plot, need_profile="profile" in args.scenarios
    )
    args.results_dir.mkdir(parents=True, exist_ok=True)
    loadavg_start = os.getloadavg()
    workdir = make_workdir()
    server: EmbeddedPostgres | None = None
    service: Service | None = None
    failed: BaseException | None = None
    pg_version = "unknown"
    max_other = 0.0
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    try:
        log(f"work dir {workdir}; starting PostgreSQL (fsync on)")
        server = start_postgres(workdir)
        migrations.upgrade(server.dsn)
        dataset = Dataset(server)
        fixture_s = dataset.create_fixture()
        pg_version = dataset.psql.run("SHOW server_version;")
        results["data_generation"] = {"fixture_s": fixture_s, "steps": []}
        service = Service(server.dsn, args.workers, workdir / "service.log")
        service.start()
        bench = Bench(
            args=args, server=server, service=service, dataset=dataset, wrk=wrk, workdir=workdir
        )
        idle_kib = {pid: memory_kib(pid)[0] for pid in bench.workers}
        log(f"service on {service.base_url}, workers {bench.workers}")
        try:
            depth_records = []
            for depth in args.depths:
                timing = dataset.grow_to(depth)
                results["data_generation"]["steps"].append({
                    "total": depth, "rows": timing.rows, "insert_s": round(timing.insert_s, 2),
                    "rows_per_s": round(timing.rows_per_s), "vacuum_s": round(timing.vacuum_s, 2),
                })  # fmt: skip
                log(
                    f"generated {timing.rows:,} conversations in {timing.insert_s:.1f} s "
                    f"({timing.rows_per_s:.0f}/s), VACUUM ANALYZE {timing.vacuum_s:.1f} s"
                )
                if "depth" in args.scenarios:
                    depth_records.append(bench.depth(depth))
                    results["depth"] = depth_records
            results["throughput_depth"] = dataset.queued()
            for clients in args.clients:
                if "ceiling" in args.scenarios:
                    results.setdefault("ceiling", []).append(bench.ceiling(clients))
                if "allocate" in args.scenarios:
                    results.setdefault("allocate", []).append(bench.allocate(clients))
            peak = max((r["throughput_per_s"] for r in results.get("allocate", [])), default=0.0)
            if "openloop" in args.scenarios and peak:
                results["openloop"] = bench.openloop(report.P99_CLIENTS, peak)
            if "auth" in args.scenarios:
                results["auth"] = variants.auth(bench, report.P99_CLIENTS)
            if "cycle" in args.scenarios:
                results["cycle"] = [bench.cycle(args.cycle_clients)]
            if "profile" in args.scenarios:
                results["profile"] = bench.profile(
                    report.P99_CLIENTS, stem=stamp, results_dir=args.results_dir
                )
            if "weights" in args.scenarios:
                results["weights"] = bench.weights(report.P99_CLIENTS)
            if "ingest" in args.scenarios:
                results.setdefault("endpoints", []).append(bench.ingest())
            if "list" in args.scenarios or "search" in args.scenarios:
                results.setdefault("endpoints", []).extend(bench.endpoints())
            if "list" in args.scenarios:
                results["priority_plan"] = variants.explain_priority_list(bench)
        except Exception as exc:  # keep what was measured; report the failure
            failed = exc
            notes.append(f"run aborted: {type(exc).__name__}: {exc}")
            traceback.print_exc()
            log(f"last lines of the service's log:\n{service.log_tail(15)}")
        results["rss"] = bench.rss(idle_kib)
        results["data_generation"]["requeue_s_total"] = round(bench.requeue_s, 1)
        for record in results.get("allocate", []):
            if record["connections"] == report.P99_CLIENTS:
                results["statements_allocate"] = record["statements"][:6]
        max_other = bench.max_other_pct
    finally:
        if service is not None:
            log("stopping the service")
            service.stop()
        if server is not None:
            log("stopping PostgreSQL")
            server.stop()
        if args.keep_workdir:
            log(f"work dir kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if "events" in args.scenarios and failed is None:
        try:
            results["events"] = variants.events(args, args.results_dir)
        except Exception as exc:  # keep the main run's figures
            notes.append(f"events run failed: {type(exc).__name__}: {exc}")

    if "citus" in args.engines and failed is None:
        _citus_run(args, wrk, results)
    wall = time.monotonic() - started
    loadavg_end = os.getloadavg()
    noisy = []
    if loadavg_start[0] > 0.5:
        noisy.append(f"load average {loadavg_start[0]:.2f} before the run started")
    if max_other > 10:
        noisy.append(f"other processes used up to {max_other:.0f} % of a core during a run")
    results["meta"] = {
        "timestamp": stamp,
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30),
        "kernel": platform.release(),
        "loadavg_start": [round(x, 2) for x in loadavg_start],
        "loadavg_end": [round(x, 2) for x in loadavg_end],
        "postgres_version": pg_version,
        "python": platform.python_version(),
        "workers": args.workers,
        "git_commit": (_git("rev-parse", "--short", "HEAD") or "unknown")
        + (" (with uncommitted changes)" if _uncommitted_changes() else ""),
        "wall_s": round(wall, 1),
        "noisy": "; ".join(noisy) + " — figures are lower bounds for an idle machine."
        if noisy
        else "",
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }
    if wall > 720:
        notes.append(f"wall time {wall:.0f} s exceeded the 12-minute budget")
    results["targets"] = report.evaluate_targets(results)
    base = args.results_dir / stamp
    report.write_json(base.with_suffix(".json.tmp"), results)
    base.with_suffix(".json.tmp").rename(base.with_suffix(".json"))
    if not args.no_plot and report.plot_latency_vs_depth(
        args.results_dir / f"{stamp}-latency-vs-depth.png", results
    ):
        log(f"plot: {args.results_dir / f'{stamp}-latency-vs-depth.png'}")
    markdown = report.render_markdown(results)
    base.with_suffix(".md.tmp").write_text(markdown + "\n")
    base.with_suffix(".md.tmp").rename(base.with_suffix(".md"))
    print(markdown)
    log(f"results: {base}.json, {base}.md ({wall:.0f} s)")
    return 1 if failed else 0


def _citus_run(args: argparse.Namespace, wrk: str, results: dict[str, Any]) -> None:
    """The Citus run (its own cluster and work dir, once the main run has stopped)."""
    workdir = make_workdir()
    try:
        results["citus"] = citus_engines.run_citus_allocate(
            wrk=wrk, workdir=workdir, depth=args.depths[0], clients=report.P99_CLIENTS,
            duration=args.duration, warmup=args.warmup, service_workers=args.workers,
        )  # fmt: skip
    except Exception as exc:  # the PostgreSQL figures stand on their own
        results["notes"].append(f"citus run failed: {type(exc).__name__}: {exc}")
        traceback.print_exc()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
