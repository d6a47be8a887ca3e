"""`python -m stress.run --profile short|full` or `python -m stress.run --soak SECONDS`.

Exit status 0 when every invariant holds (and, for a soak, every curve is flat) and the
service stopped cleanly; 1 otherwise. `--check-only RUN_DIR` re-runs the checker on the files
of a finished run.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson
import uvloop

from stress import provision
from stress.checker import CheckReport, check
from stress.environment import ENGINES, REPO_ROOT, Service, StopResult, start_database
from stress.eventlog import EventLogWriter, load_events
from stress.load import LoadProfile, run_load
from stress.model import FinalRows, World, build_world
from stress.quiet import quiet_allocations
from stress.report import format_report
from stress.soak import Sample, Verdict, curve_lines, evaluate, sample_every

GRACE_PERIOD = "2s"
GRACE_INTERVAL = "1s"
DEFAULT_DB_MAX_CONNS = 25  # the service's default (docs/decisions.md#configuration)
QUIET_ROUNDS = 10  # allocations per tenant in the quiet phase after the load

PROFILES: dict[str, LoadProfile] = {
    # make test: ~15 s of load, ~35 s with start-up and shutdown
    "short": LoadProfile(
        duration=15, conversation_cap_per_tenant=300, prefill_per_tenant=40, snapshot_every=1.0
    ),
    # make stress: three minutes of mixed load
    "full": LoadProfile(
        duration=180,
        conversation_cap_per_tenant=1500,
        prefill_per_tenant=100,
        ingest_loops_per_tenant=3,
        snapshot_every=3.0,
    ),
    # make stress: the soak (duration from --soak), sampled every 10 s
    "soak": LoadProfile(
        duration=600,
        conversation_cap_per_tenant=1000,
        prefill_per_tenant=1000,  # the whole population up front: the table size stays flat
        snapshot_every=10.0,
    ),
}


@dataclass
class DriveResult:
    final: FinalRows
    snapshots: list[FinalRows]
    sweeper_wait: float
    grace_rows_left: int
    samples: list[Sample] = field(default_factory=list)
    autovacuum: dict[str, str] = field(default_factory=dict)
    load_seconds: float = 0.0


async def _drive(
    *,
    dsn: str,
    service: Service,
    world: World,
    profile: LoadProfile,
    log: EventLogWriter,
    seed: int,
    soak: bool,
) -> DriveResult:
    conn = await provision.connect(dsn)
    snapshot_conn = await provision.connect(dsn)
    try:
        samples: list[Sample] = []
        snapshots: list[FinalRows] = []
        started = time.monotonic()
        load = asyncio.create_task(run_load(world, service.base_url, log, profile, seed))
        snapshotter = asyncio.create_task(
            provision.snapshots_every(snapshot_conn, profile.snapshot_every, load, snapshots)
        )
        if soak:
            # Sample until the load ends (the last sample is taken right after it).
            sampler = asyncio.create_task(
                sample_every(
                    conn=conn,
                    service=service,
                    started=started,
                    requests=lambda: log.count,
                    load=load,
                    samples=samples,
                )
            )
            result = await load
            await sampler
        else:
            result = await load
        await snapshotter
        timeout = world.grace_period_seconds + 10 * world.grace_interval_seconds + 15
        waited, left = await provision.wait_for_idle_sweeper(conn, timeout)
        await quiet_allocations(
            conn=conn,
            world=world,
            base_url=service.base_url,
            log=log,
            rounds=QUIET_ROUNDS,
            rng=random.Random(seed),  # noqa: S311
        )
        final = await provision.snapshot(conn)
        autovacuum = await provision.autovacuum_settings(conn) if soak else {}
        return DriveResult(
            final=final,
            snapshots=snapshots,
            sweeper_wait=waited,
            grace_rows_left=left,
            samples=samples,
            autovacuum=autovacuum,
            load_seconds=result.finished - result.started,
        )
    finally:
        await conn.close()
        await snapshot_conn.close()


def _profile(args: argparse.Namespace) -> tuple[str, LoadProfile]:
    if args.soak is not None:
        return "soak", replace(PROFILES["soak"], duration=float(args.soak))
    profile = PROFILES[args.profile]
    if args.duration is not None:
        profile = replace(profile, duration=float(args.duration))
    return args.profile, profile


def _seconds(value: str) -> float:
    return float(value.rstrip("s"))


@dataclass
class Execution:
    drive: DriveResult
    stop: StopResult
    workers: list[int]
    phases: dict[str, str]


def execute(
    args: argparse.Namespace, profile: LoadProfile, world: World, run_dir: Path, seed: int
) -> Execution:
    """Database, service, load, snapshot; always stops the service and the database."""
    began = time.monotonic()
    phases: dict[str, str] = {}
    database = start_database(engine=args.engine)
    phases[f"{args.engine}+migrate"] = f"{time.monotonic() - began:.1f}s"
    service: Service | None = None
    stop: StopResult | None = None
    log = EventLogWriter(run_dir / "events.jsonl")
    try:
        asyncio.run(_provision(database.dsn, world))
        mark = time.monotonic()
        service = Service(
            dsn=database.dsn,
            log_path=run_dir / "service.log",
            workers=args.workers,
            grace_period=GRACE_PERIOD,
            grace_interval=GRACE_INTERVAL,
            db_max_conns=args.db_max_conns,
        )
        service.start()
        phases["service start"] = f"{time.monotonic() - mark:.1f}s"
        workers = [p.pid for p in service.workers_info()]
        drive_coro = _drive(
            dsn=database.dsn,
            service=service,
            world=world,
            profile=profile,
            log=log,
            seed=seed,
            soak=args.soak is not None,
        )
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            drive = runner.run(drive_coro)
        phases["sweeper idle after"] = f"{drive.sweeper_wait:.1f}s"
    finally:
        log.close()
        if service is not None:
            stop = service.stop()
        database.stop()
    assert stop is not None
    phases["run"] = f"{time.monotonic() - began:.1f}s"
    return Execution(drive=drive, stop=stop, workers=workers, phases=phases)


def run(args: argparse.Namespace) -> int:
    name, profile = _profile(args)
    seed = args.seed if args.seed is not None else random.SystemRandom().getrandbits(32)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir: Path = args.run_dir or REPO_ROOT / "build" / "stress" / f"{stamp}-{name}"
    run_dir.mkdir(parents=True, exist_ok=True)
    world = build_world(
        random.Random(seed),  # noqa: S311 - reproducible ids, not security
        operators=args.operators,
        grace_period_seconds=_seconds(GRACE_PERIOD),
        grace_interval_seconds=_seconds(GRACE_INTERVAL),
    )
    (run_dir / "world.json").write_bytes(orjson.dumps(world.to_json(), option=orjson.OPT_INDENT_2))
    print(f"stress: profile={name} duration={profile.duration:g}s seed={seed} run dir {run_dir}")
    sys.stdout.flush()

    done = execute(args, profile, world, run_dir, seed)
    drive, stop = done.drive, done.stop
    (run_dir / "final_rows.json").write_bytes(
        orjson.dumps(drive.final.to_json(), option=orjson.OPT_INDENT_2)
    )
    mark = time.monotonic()
    (run_dir / "snapshots.jsonl").write_bytes(
        b"".join(orjson.dumps(rows.to_json()) + b"\n" for rows in drive.snapshots)
    )
    report = check(
        load_events(run_dir / "events.jsonl"),
        world,
        drive.final,
        drive.snapshots,
        strict=args.strict,
    )
    done.phases["check"] = f"{time.monotonic() - mark:.1f}s"

    verdicts: list[Verdict] = []
    curves: list[str] = []
    if name == "soak":
        pool_limit = args.workers * (args.db_max_conns or DEFAULT_DB_MAX_CONNS)
        verdicts = evaluate(drive.samples, pool_limit=pool_limit)
        curves = curve_lines(drive.samples)
        (run_dir / "soak_samples.jsonl").write_bytes(
            b"".join(orjson.dumps(s.to_json()) + b"\n" for s in drive.samples)
        )
    shutdown_ok = stop.exit_code == 0 and not stop.survivors
    passed = report.violations == 0 and all(v.ok for v in verdicts) and shutdown_ok
    meta: dict[str, Any] = {
        "profile": name,
        "seed": seed,
        "engine": args.engine,
        "workers": args.workers,
        "worker_pids": ",".join(map(str, done.workers)),
        "operators": sum(len(t.staff) for t in world.tenants),
        "tenants": len(world.tenants),
        "load": f"{drive.load_seconds:.1f}s",
        "grace": f"{GRACE_PERIOD}/{GRACE_INTERVAL}",
        "grace_rows_left": drive.grace_rows_left,
        "shutdown": f"exit={stop.exit_code} in {stop.seconds:.1f}s"
        + (" SIGKILL" if stop.killed else "")
        + (f" survivors={stop.survivors}" if stop.survivors else " no survivors"),
        "phases": done.phases,
    }
    if drive.autovacuum:
        meta["autovacuum (defaults, not tuned)"] = drive.autovacuum
    lines = format_report(
        title=f"stress report ({name}) — {run_dir}",
        check=report,
        meta=meta,
        soak=verdicts,
        curves=curves,
        passed=passed,
    )
    text = "\n".join(lines)
    print(text)
    (run_dir / "report.txt").write_text(text + "\n")
    payload = _report_json(report, meta, verdicts, passed, shutdown_ok)
    (run_dir / "report.json").write_bytes(payload)
    if args.report_json is not None:
        args.report_json.write_bytes(payload)
    return 0 if passed else 1


def _report_json(
    report: CheckReport,
    meta: dict[str, Any],
    verdicts: Sequence[Verdict],
    passed: bool,
    shutdown_ok: bool,
) -> bytes:
    body = {
        **report.to_json(),
        "passed": passed,
        "shutdown_ok": shutdown_ok,
        "meta": meta,
        "soak": [{"name": v.name, "ok": v.ok, "detail": v.detail} for v in verdicts],
    }
    return orjson.dumps(body, option=orjson.OPT_INDENT_2)


async def _provision(dsn: str, world: World) -> None:
    conn = await provision.connect(dsn)
    try:
        await provision.provision(conn, world)
    finally:
        await conn.close()


def check_only(run_dir: Path, strict: bool) -> int:
    world = World.from_json(orjson.loads((run_dir / "world.json").read_bytes()))
    final = FinalRows.from_json(orjson.loads((run_dir / "final_rows.json").read_bytes()))
    snapshots_path = run_dir / "snapshots.jsonl"
    snapshots = [
        FinalRows.from_json(orjson.loads(line))
        for line in (snapshots_path.read_bytes().splitlines() if snapshots_path.exists() else [])
        if line.strip()
    ]
    report = check(load_events(run_dir / "events.jsonl"), world, final, snapshots, strict=strict)
    lines = format_report(
        title=f"stress check — {run_dir}",
        check=report,
        meta={},
        passed=report.violations == 0,
    )
    print("\n".join(lines))
    return 0 if report.violations == 0 else 1


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m stress.run", description=__doc__)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="short")
    parser.add_argument(
        "--soak", type=float, metavar="SECONDS", help="soak: mixed load for SECONDS, sampled"
    )
    parser.add_argument("--duration", type=float, help="override the profile's load time (s)")
    parser.add_argument("--workers", type=int, default=2, help="service worker processes")
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default="postgres",
        help="citus: a coordinator and two workers on 127.0.0.1 (Citus built once if needed)",
    )
    parser.add_argument("--operators", type=int, default=64)
    parser.add_argument("--db-max-conns", type=int, help="DB_MAX_CONNS per worker")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--run-dir", type=Path, help="default build/stress/<time>-<profile>")
    parser.add_argument("--report-json", type=Path, help="also write the JSON report here")
    parser.add_argument("--check-only", type=Path, metavar="RUN_DIR", help="re-check a run")
    parser.add_argument(
        "--strict", action="store_true", help="known service defects count as violations too"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.check_only is not None:
        return check_only(args.check_only, args.strict)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
