"""The variants `make bench` reports next to its plain runs (each a ratio in the same run).

- auth: /allocate at 32 operators through a second service started with AUTH_MODE=token
  (every request carries `Authorization: Bearer iat_…`, the operator's own API token),
  between two runs of the plain (headers-mode) service: headers, token, headers. Target:
  token throughput within 10 % of the headers runs' mean.
- events: `python -m bench.events_fanout` (1,000 SSE readers on one worker: /allocate with
  and without them, commit-to-delivery p99), run as a child process once the main run's
  database and service are stopped, so it has the machine to itself.

The priority list (`list by priority, QUEUED`) and the weights change at the deepest queue
are scenarios of bench.run itself; bench.report turns all of them into target rows.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import data
from bench.infra import PROJECT_ROOT, Service, log
from inbox_allocation.sql.conversations import LIST_BY_PRIORITY

if TYPE_CHECKING:
    from bench.run import Bench

AUTH_RATIO_TARGET = 0.9
EVENTS_RATIO_TARGET = 0.9
EVENTS_P99_LIMIT_MS = 500.0


def bench_token(k: int) -> str:
    """A deterministic API token for operator k (the format of services.tokens.new_token)."""
    raw = hashlib.sha256(f"bench-token-{k}".encode()).digest()
    return "iat_" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def create_tokens(bench: Bench, operators: list[int]) -> dict[int, str]:
    """One API token per operator, written as `POST …/tokens` would (record + lookup row)."""
    tokens = {k: bench_token(k) for k in operators}
    values = []
    for n, (k, token) in enumerate(tokens.items()):
        digest = hashlib.sha256(token.encode()).hexdigest()
        token_id = f"b5000000-0000-4000-8000-{n + 1:012d}"
        values.append((data.tenant_id(data.operator_tenant(k)), token_id, data.operator_id(k),
                       digest))  # fmt: skip
    records = ", ".join(
        f"('{t}', '{i}', '{o}', 'bench', decode('{h}', 'hex'), now())" for t, i, o, h in values
    )
    lookups = ", ".join(f"(decode('{h}', 'hex'), '{t}', '{i}', '{o}')" for t, i, o, h in values)
    bench.dataset.psql.run(
        "INSERT INTO api_tokens (tenant_id, id, operator_id, name, token_hash, created_at)"
        f" VALUES {records} ON CONFLICT DO NOTHING;"
        "INSERT INTO api_token_lookup (token_hash, tenant_id, token_id, operator_id)"
        f" VALUES {lookups} ON CONFLICT DO NOTHING;"
    )
    return tokens


def write_token_identities(path: Path, operators: list[int], tokens: dict[int, str]) -> Path:
    lines = [
        f"{data.tenant_id(data.operator_tenant(k))} {data.operator_id(k)} "
        + ",".join(data.inbox_id(g) for g in data.subscriptions(k))
        + f" {tokens[k]}"
        for k in operators
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@contextlib.contextmanager
def _measuring(bench: Bench, service: Service) -> Iterator[None]:
    """Point the bench (its base URL and CPU sampler groups) at another service."""
    saved = bench.service, bench.workers
    bench.service, bench.workers = service, service.worker_pids()
    try:
        yield
    finally:
        bench.service, bench.workers = saved


def auth(bench: Bench, clients: int) -> dict[str, Any]:
    """headers, token, headers: /allocate at `clients` operators, closed loop."""
    operators = data.operators_for(clients)
    tokens = create_tokens(bench, operators)
    plain_ids = data.write_identities(bench.workdir / f"auth-headers-{clients}.ids", operators)
    token_ids = write_token_identities(
        bench.workdir / f"auth-token-{clients}.ids", operators, tokens
    )
    token_service = Service(
        bench.service.dsn, bench.args.workers, bench.workdir / "service-token.log",
        env={"AUTH_MODE": "token"},
    )  # fmt: skip
    token_service.start()
    runs: list[dict[str, Any]] = []
    try:
        for mode in ("headers", "token", "headers"):
            ids = token_ids if mode == "token" else plain_ids
            target = token_service if mode == "token" else bench.service
            with _measuring(bench, target):
                bench._warmup("allocate", ids, clients)
                record = bench.measure(
                    f"allocate {clients}, AUTH_MODE={mode}",
                    bench._wrk("allocate", ids, clients, bench.args.duration),
                )
            record["auth_mode"] = mode
            runs.append(record)
            bench.requeue()
    finally:
        token_service.stop()
    headers_mean = (runs[0]["throughput_per_s"] + runs[2]["throughput_per_s"]) / 2
    token = runs[1]
    ratio = token["throughput_per_s"] / headers_mean if headers_mean else None
    log(f"auth: token {token['throughput_per_s']:.0f}/s vs headers {headers_mean:.0f}/s = {ratio}")
    return {
        "clients": clients,
        "runs": runs,
        "headers_mean_per_s": round(headers_mean, 1),
        "token_per_s": token["throughput_per_s"],
        "ratio": round(ratio, 3) if ratio is not None else None,
    }


def events(args: Any, results_dir: Path) -> dict[str, Any]:
    """The fan-out benchmark as a child process; its JSON result (or the failure)."""
    started = time.monotonic()
    command = [sys.executable, "-m", "bench.events_fanout", "--seconds", str(args.events_seconds),
               "--results-dir", str(results_dir)]  # fmt: skip
    log(f"events: {' '.join(command[1:])}")
    done = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True,
                          check=False, timeout=600)  # fmt: skip
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"bench.events_fanout failed ({done.returncode}): {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    result["wall_s"] = round(time.monotonic() - started, 1)
    log(f"events: {result}")
    return result


def explain_priority_list(bench: Bench) -> dict[str, Any]:
    """EXPLAIN ANALYZE of `GET /conversations?sort=priority&state=QUEUED&per_page=50` (the
    first page, as a MANAGER of tenant 1 sees it) at the current depth: the statement the
    service sends, with its parameters, generic and custom plans."""
    statement = re.sub(r"\s+", " ", LIST_BY_PRIORITY.replace("/*filters*/", "")).strip()
    args = (f"'{data.tenant_id(1)}', 51, NULL, NULL, NULL, "
            "extract(epoch FROM now())::float8")  # fmt: skip
    plans: dict[str, Any] = {}
    for mode in ("force_generic_plan", "force_custom_plan"):
        out = bench.dataset.psql.run(
            "PREPARE bench_priority(uuid, int, timestamptz, uuid, float8, float8) AS "
            f"{statement};\nSET plan_cache_mode = {mode};\n"
            "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING ON) "
            f"EXECUTE bench_priority({args});\n"
        )
        match = re.search(r"Execution Time: ([\d.]+) ms", out)
        buffers = re.search(r"Buffers: shared hit=(\d+)(?: read=(\d+))?", out)
        plans[mode.removeprefix("force_").removesuffix("_plan")] = {
            "execution_ms": float(match.group(1)) if match else None,
            "buffers": sum(int(b) for b in buffers.groups() if b) if buffers else None,
            "plan": out,
        }
    log("priority list plan: " + ", ".join(
        f"{mode} {plan['execution_ms']} ms, {plan['buffers']} buffers"
        for mode, plan in plans.items()
    ))  # fmt: skip
    return plans


# -- report --------------------------------------------------------------------------------


def targets(results: dict[str, Any], list_p50_limit_ms: float) -> list[dict[str, Any]]:
    """Target rows of the variants (None = not measured in this run)."""
    rows: list[dict[str, Any]] = []
    auth_run = results.get("auth")
    if auth_run:
        token = auth_run["runs"][1]
        rows.append({
            "target": f"/allocate AUTH_MODE=token within 10 % of headers ({auth_run['clients']} "
                      "clients)",
            "measured": f"{auth_run['token_per_s']:.0f}/s vs {auth_run['headers_mean_per_s']:.0f}"
                        f"/s = {auth_run['ratio']:.2f}× (p50 / p99 "
                        f"{token['latency_ms']['p50']:.2f} / {token['latency_ms']['p99']:.2f} ms)",
            "limit": f"≥ {AUTH_RATIO_TARGET}×",
            "value": auth_run["ratio"],
            "ok": auth_run["ratio"] is not None and auth_run["ratio"] >= AUTH_RATIO_TARGET,
            "other_cpu_pct": max(r["cpu_pct_of_core"]["other"] for r in auth_run["runs"]),
        })  # fmt: skip
    ev = results.get("events")
    if ev:
        ratio = 1 + ev["allocate_change_pct"] / 100
        lat = ev["latency"]
        expected = lat["deliveries"] + lat["missing_deliveries"]
        rows.append({
            "target": f"/allocate with {ev['readers']:,} SSE readers within 10 % (one worker)",
            "measured": f"{ev['allocate_per_s_with_readers']:.0f}/s vs "
                        f"{ev['allocate_per_s_no_readers']:.0f}/s = {ratio:.2f}× (service CPU "
                        f"per allocation {ev.get('service_cpu_change_pct', 0):+.1f} %)",
            "limit": f"≥ {EVENTS_RATIO_TARGET}×",
            "value": ratio,
            "ok": ratio >= EVENTS_RATIO_TARGET,
        })  # fmt: skip
        rows.append({
            "target": f"commit-to-delivery p99 with {ev['readers']:,} SSE readers",
            "measured": f"p50 {lat['p50_ms']} / p99 {lat['p99_ms']} / max {lat['max_ms']} ms, "
                        f"{lat['missing_deliveries']} of {expected} deliveries missing",
            "limit": f"≤ {EVENTS_P99_LIMIT_MS:g} ms",
            "value": lat["p99_ms"],
            "ok": lat["p99_ms"] <= EVENTS_P99_LIMIT_MS and lat["missing_deliveries"] == 0,
        })  # fmt: skip
    priority = next(
        (r for r in results.get("endpoints", []) if r["name"] == "list by priority, QUEUED"), None
    )
    if priority:
        p50 = priority["latency_ms"]["p50"]
        plan = results.get("priority_plan", {}).get("generic", {})
        rows.append({
            "target": f"list sort=priority p50 at {results.get('throughput_depth', 0):,} queued",
            "measured": f"{p50:.2f} ms (statement {plan.get('execution_ms')} ms, "
                        f"{plan.get('buffers')} buffers; service CPU "
                        f"{priority['cpu_us_per_request'].get('service', 0):.0f} µs/request)",
            "limit": f"≤ {list_p50_limit_ms:g} ms",
            "value": p50,
            "ok": p50 <= list_p50_limit_ms,
            "other_cpu_pct": priority["cpu_pct_of_core"]["other"],
        })  # fmt: skip
    weights = results.get("weights")
    if weights:
        during = weights["during"]
        fivexx = sum(n for s, n in during["statuses"].items() if s.startswith("5"))
        ok = (
            weights["throughput_ratio"] is not None and weights["throughput_ratio"] >= 0.8
            and fivexx == 0 and weights["order_check"]["exact"]
            and weights["change"].get("status") == 200
        )  # fmt: skip
        rows.append({
            "target": f"/allocate while PUT /tenant/weights on {weights['tenant_conversations']:,}"
                      " conversations: ≥ 0.8×, no 5xx, order exact",
            "measured": f"{weights['throughput_ratio']}×, {fivexx} 5xx, PUT "
                        f"{weights['change'].get('status')}, order "
                        f"{'exact' if weights['order_check']['exact'] else 'NOT exact'}",
            "limit": "≥ 0.8×, 0, exact",
            "value": weights["throughput_ratio"],
            "ok": ok,
        })  # fmt: skip
    return rows


def auth_section(results: dict[str, Any]) -> list[str]:
    auth_run = results.get("auth")
    if not auth_run:
        return []
    out = ["## /allocate by authentication mode", ""]
    out.append(
        f"{auth_run['clients']} operators, closed loop, run in the order shown (the token "
        "service is a second instance of the service with AUTH_MODE=token on the same "
        "database; every request carries the operator's API token)."
    )
    out.append("")
    out.append("| AUTH_MODE | /allocate /s | p50 / p99 ms | non-2xx | CPU µs/request svc / pg |")
    out.append("|---|---|---|---|---|")
    for run in auth_run["runs"]:
        per = run.get("cpu_us_per_request", {})
        out.append(
            f"| {run['auth_mode']} | {run['throughput_per_s']:.0f} | "
            f"{run['latency_ms']['p50']:.2f} / {run['latency_ms']['p99']:.2f} | {run['non_2xx']} "
            f"| {per.get('service', 0):.0f} / {per.get('postgres', 0):.0f} |"
        )
    out.append("")
    return out
