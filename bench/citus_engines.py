"""The Citus run of `make bench`: /allocate on a coordinator and two workers.

The main run measures /allocate on plain PostgreSQL; this one repeats the same wrk load (the
same data set, the same operators, the same client count and duration) against a Citus
cluster on the same machine (coordinator + 2 workers, fsync on), after the main run has
stopped its own server, so the two sit side by side in one report. Besides throughput and
latency it records the CPU time of each node per allocation (from /proc, over the measured
seconds): on one machine all nodes share the same cores, so the per-node cost — not the
throughput — is what says how the cluster would scale on separate machines
(docs/scaling-out.md, "What we measured").
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from bench import data, loadgen
from bench.data import Dataset
from bench.infra import Service, log, process_tree, subtree
from inbox_allocation.db import migrations
from inbox_allocation.db.citus_cluster import CitusCluster

SHARD_COUNT = 8  # a few shards per worker, as a small production cluster would have
TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds of the processes (those that still exist)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


def _node_pids(cluster: CitusCluster) -> dict[str, list[int]]:
    tree = process_tree()
    names = ["coordinator"] + [f"worker{i}" for i in range(1, len(cluster.worker_nodes) + 1)]
    return {
        name: subtree(tree, node.pid) if node.pid else []
        for name, node in zip(names, cluster.nodes, strict=True)
    }


def run_citus_allocate(
    *, wrk: str, workdir: Path, depth: int, clients: int, duration: float, warmup: float,
    service_workers: int,
) -> dict[str, Any]:  # fmt: skip
    """/allocate at `clients` connections for `duration` s on a fresh cluster holding
    `depth` queued conversations; a JSON-ready record."""
    cluster = CitusCluster(
        base_dir=workdir / "citus", user="bench", password="bench-pass",  # noqa: S106
        database="bench", shard_count=SHARD_COUNT, fsync=True,
        settings={"max_connections": "300", "log_min_messages": "warning"},
    )  # fmt: skip
    service: Service | None = None
    started = time.monotonic()
    try:
        cluster.start()
        migrations.upgrade(cluster.dsn)
        dataset = Dataset(cluster.node(0))
        dataset.create_fixture()
        timing = dataset.grow_to(depth)
        setup_s = time.monotonic() - started
        log(f"citus: cluster, schema and {timing.rows:,} conversations in {setup_s:.1f} s")
        service = Service(cluster.dsn, service_workers, workdir / "service-citus.log")
        service.start()
        ids = data.write_identities(workdir / "citus-allocate.ids", data.operators_for(clients))

        def wrk_run(seconds: float) -> loadgen.LoadResult:
            assert service is not None
            return loadgen.run_wrk(
                wrk, service.base_url, mode="allocate", identities=ids, connections=clients,
                duration_s=seconds, phone_space=data.PHONE_SPACE, run_tag="citus",
            )  # fmt: skip

        if warmup > 0:
            wrk_run(warmup)
            dataset.requeue()
        nodes = _node_pids(cluster)
        service_pids = subtree(process_tree(), service.process.pid) if service.process else []
        before = {name: _cpu_s(pids) for name, pids in nodes.items()}
        before["service"] = _cpu_s(service_pids)
        result = wrk_run(duration)
        after = {name: _cpu_s(pids) for name, pids in nodes.items()}
        after["service"] = _cpu_s(service_pids)
        record = result.as_dict()
        record["name"] = f"citus allocate {clients}"
        record["nodes"] = 1 + len(cluster.worker_nodes)
        record["shard_count"] = SHARD_COUNT
        record["depth"] = depth
        record["setup_s"] = round(setup_s, 1)
        if result.requests:
            record["cpu_us_per_request"] = {
                name: round(1e6 * (after[name] - before[name]) / result.requests, 1)
                for name in after
            }
        lat = result.latency_ms
        log(f"citus allocate {clients}: {result.throughput:.0f}/s, p50 {lat['p50']:.2f} ms, "
            f"p99 {lat['p99']:.2f} ms, non-2xx {result.non_2xx}")  # fmt: skip
        return record
    finally:
        if service is not None:
            service.stop()
        cluster.stop()


def markdown(results: dict[str, Any]) -> list[str]:
    """The report's section: Citus next to the main run's plain PostgreSQL at the same
    client count."""
    citus = results.get("citus")
    if not citus:
        return []
    plain = next(
        (r for r in results.get("allocate", []) if r["connections"] == citus["connections"]),
        None,
    )
    out = ["## /allocate on Citus (coordinator + 2 workers, same machine)", ""]
    out += [
        "| engine | clients | throughput /s | p50 ms | p99 ms | non-2xx |",
        "|---|---|---|---|---|---|",
    ]
    for name, run in (("PostgreSQL", plain), ("Citus", citus)):
        if run is None:
            continue
        lat = run["latency_ms"]
        out.append(
            f"| {name} | {run['connections']} | {run['throughput_per_s']:.0f} | "
            f"{lat['p50']:.2f} | {lat['p99']:.2f} | {run['non_2xx']} |"
        )
    per = citus.get("cpu_us_per_request")
    if per:
        parts = ", ".join(f"{name} {value:.0f}" for name, value in per.items())
        out += ["", f"CPU µs per allocation on Citus: {parts}."]
    if plain and plain.get("cpu_us_per_request"):
        p = plain["cpu_us_per_request"]
        out += [f"On PostgreSQL: postgres {p.get('postgres', 0):.0f}, "
                f"service {p.get('service', 0):.0f}."]  # fmt: skip
    return [*out, ""]
