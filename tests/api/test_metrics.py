"""GET /metrics: Prometheus text, request metrics by route template, business counters,
pool and per-tenant queue gauges (cached, surviving a database outage), METRICS_ENABLED,
and the multiprocess mode of several uvicorn workers."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
import yaml
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from inbox_allocation.app import create_app
from inbox_allocation.config import Settings
from inbox_allocation.db.seed_ids import (
    ACME,
    ACME_ADMIN,
    ACME_OP4,
    ACME_OP5,
    INBOX_SALES,
    TECHSTART,
    conversation,
)
from inbox_allocation.observability import metrics
from inbox_allocation.observability.metrics import MetricsEndpoint
from inbox_allocation.processes import (
    free_port,
    parent_death_signal,
    wait_ready,
    world_traversable_tempdir,
)
from inbox_allocation.services.grace import GraceSweeper
from tests.support.http import headers
from tests.support.paths import REPO_ROOT

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200
    return parse(response.text)


def requests_of(samples: Samples, method: str, route: str, status: str) -> float:
    return value(
        samples, "inbox_allocation_http_requests_total", method=method, route=route, status=status
    )


def queue_collector(app: FastAPI) -> metrics.QueueStatsCollector:
    endpoint: MetricsEndpoint = app.state.metrics_endpoint
    return endpoint.queue


# --- The endpoint ----------------------------------------------------------------------------


async def test_metrics_is_prometheus_text_without_identity_headers(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    names = {family.name for family in text_string_to_metric_families(response.text)}
    assert {
        "inbox_allocation_http_requests",
        "inbox_allocation_http_request_duration_seconds",
        "inbox_allocation_allocations",
        "inbox_allocation_claims",
        "inbox_allocation_claim_conflicts",
        "inbox_allocation_capacity_refusals",
        "inbox_allocation_grace_releases",
        "inbox_allocation_idempotent_replays",
        "inbox_allocation_db_pool_size",
        "inbox_allocation_db_pool_in_use",
        "inbox_allocation_db_pool_max_size",
        "inbox_allocation_queued_conversations",
        "inbox_allocation_oldest_queued_wait_seconds",
        "inbox_allocation_queue_stats_up",
    } <= names
    # Not part of the API: no OpenAPI entry, and identity headers are ignored.
    assert (await client.get("/metrics", headers={"X-Tenant-ID": "garbage"})).status_code == 200
    spec = await client.get("/api/openapi.yaml")
    assert "/metrics" not in spec.text


async def test_openmetrics_is_served_when_asked_for(client: httpx.AsyncClient) -> None:
    response = await client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")


# --- Request metrics -------------------------------------------------------------------------


async def test_requests_are_labelled_by_route_template_not_path(
    client: httpx.AsyncClient,
) -> None:
    template = "/api/v1/inboxes/{inbox_id}"
    before = await scrape(client)
    response = await client.get(f"/api/v1/inboxes/{INBOX_SALES}", headers=headers(ACME_ADMIN))
    assert response.status_code == 200
    after = await scrape(client)
    assert (
        requests_of(after, "GET", template, "200")
        == requests_of(before, "GET", template, "200") + 1
    )
    count = "inbox_allocation_http_request_duration_seconds_count"
    assert (
        value(after, count, method="GET", route=template, status="200")
        == value(before, count, method="GET", route=template, status="200") + 1
    )
    # No label anywhere carries a raw path (the inbox id).
    assert not any(INBOX_SALES in label for _, labels in after for _, label in labels)


async def test_mutating_requests_unknown_paths_and_preflights_are_labelled(
    client: httpx.AsyncClient,
) -> None:
    before = await scrape(client)
    # POST bodies pass the JSON-body middleware; the route is still known.
    refused = await client.post(
        "/api/v1/claim", headers=headers(ACME_OP4), json={"conversation_id": "nope"}
    )
    assert refused.status_code == 400
    await client.get("/no/such/path/12345")
    # A preflight from an origin CORS does not allow (none by default) reaches routing and is
    # refused there (405); its route label still comes from the patterns.
    await client.options(
        f"/api/v1/inboxes/{INBOX_SALES}",
        headers={"Origin": "https://x.test", "Access-Control-Request-Method": "GET"},
    )
    after = await scrape(client)

    def grew(method: str, route: str, status: str) -> float:
        return requests_of(after, method, route, status) - requests_of(
            before, method, route, status
        )

    assert grew("POST", "/api/v1/claim", "400") == 1
    assert grew("GET", "unmatched", "404") == 1
    assert grew("OPTIONS", "/api/v1/inboxes/{inbox_id}", "405") == 1
    assert not any("12345" in label for _, labels in after for _, label in labels)


async def test_latency_buckets_suit_a_millisecond_service(client: httpx.AsyncClient) -> None:
    await scrape(client)  # recorded once answered: the next scrape shows it
    samples = await scrape(client)
    bounds = sorted(
        float(dict(labels)["le"])
        for name, labels in samples
        if name == "inbox_allocation_http_request_duration_seconds_bucket"
        and dict(labels).get("route") == "/metrics"
    )
    assert bounds[0] == 0.001
    assert {0.005, 0.01, 0.025, 0.05} <= set(bounds)
    assert bounds[-1] == float("inf")


async def test_unknown_methods_do_not_create_label_values(client: httpx.AsyncClient) -> None:
    await client.request("BREW", "/health")
    samples = await scrape(client)
    assert not any(("method", "BREW") in labels for _, labels in samples)
    assert requests_of(samples, "OTHER", "/health", "405") >= 1


# --- Business counters -----------------------------------------------------------------------


def test_record_functions_increment_their_counters() -> None:
    registry = metrics.REGISTRY

    def sample(name: str, **labels: str) -> float:
        return registry.get_sample_value(name, labels) or 0.0

    before = {
        "allocations": sample("inbox_allocation_allocations_total"),
        "claimed": sample("inbox_allocation_claims_total", outcome="claimed"),
        "not_queued": sample("inbox_allocation_claims_total", outcome="not_queued"),
        "conflict": sample("inbox_allocation_claim_conflicts_total", reason="not_queued"),
        "capacity": sample("inbox_allocation_capacity_refusals_total", action="claim"),
        "grace": sample("inbox_allocation_grace_releases_total"),
        "replays": sample("inbox_allocation_idempotent_replays_total"),
    }
    metrics.record_allocation()
    metrics.record_claim("claimed")
    metrics.record_claim("not_queued")
    metrics.record_capacity_refusal("claim")
    metrics.record_grace_release(3)
    metrics.record_grace_release(0)
    metrics.record_idempotent_replay()
    assert sample("inbox_allocation_allocations_total") == before["allocations"] + 1
    assert sample("inbox_allocation_claims_total", outcome="claimed") == before["claimed"] + 1
    assert sample("inbox_allocation_claims_total", outcome="not_queued") == before["not_queued"] + 1
    assert (
        sample("inbox_allocation_claim_conflicts_total", reason="not_queued")
        == before["conflict"] + 1
    )
    # A successful claim is no conflict.
    assert sample("inbox_allocation_claim_conflicts_total", reason="claimed") == 0
    assert (
        sample("inbox_allocation_capacity_refusals_total", action="claim") == before["capacity"] + 1
    )
    assert sample("inbox_allocation_grace_releases_total") == before["grace"] + 3
    assert sample("inbox_allocation_idempotent_replays_total") == before["replays"] + 1


async def test_every_outcome_series_exists_from_the_start(client: httpx.AsyncClient) -> None:
    samples = await scrape(client)
    for outcome in metrics.CLAIM_OUTCOMES:
        assert ("inbox_allocation_claims_total", frozenset({("outcome", outcome)})) in samples
    for action in metrics.CAPACITY_ACTIONS:
        key = ("inbox_allocation_capacity_refusals_total", frozenset({("action", action)}))
        assert key in samples


# Route-level: these count only once the services call the record_* functions.


async def test_allocate_counts_an_allocation(client: httpx.AsyncClient) -> None:
    before = await scrape(client)
    response = await client.post("/api/v1/allocate", headers=headers(ACME_OP4))
    assert response.status_code == 200
    after = await scrape(client)
    name = "inbox_allocation_allocations_total"
    assert value(after, name) == value(before, name) + 1


async def test_claims_count_by_outcome_and_conflicts(client: httpx.AsyncClient) -> None:
    claims, conflicts = "inbox_allocation_claims_total", "inbox_allocation_claim_conflicts_total"
    before = await scrape(client)
    claimed = await client.post(
        "/api/v1/claim", headers=headers(ACME_OP4), json={"conversation_id": conversation(1)}
    )
    assert claimed.status_code == 200
    again = await client.post(
        "/api/v1/claim", headers=headers(ACME_OP4), json={"conversation_id": conversation(1)}
    )
    assert again.status_code == 200
    taken = await client.post(  # 7…01 now belongs to 04
        "/api/v1/claim", headers=headers(ACME_OP5), json={"conversation_id": conversation(1)}
    )
    assert (taken.status_code, taken.json()["error"]["code"]) == (409, "CONVERSATION_NOT_QUEUED")
    after = await scrape(client)
    assert value(after, claims, outcome="claimed") == value(before, claims, outcome="claimed") + 1
    assert (
        value(after, claims, outcome="already_owned")
        == value(before, claims, outcome="already_owned") + 1
    )
    assert (
        value(after, conflicts, reason="not_queued")
        == value(before, conflicts, reason="not_queued") + 1
    )


async def test_idempotent_replay_is_counted(client: httpx.AsyncClient) -> None:
    name = "inbox_allocation_idempotent_replays_total"
    before = await scrape(client)
    key = headers(ACME_OP4, **{"Idempotency-Key": f"metrics-{uuid.uuid4()}"})
    first = await client.post("/api/v1/allocate", headers=key)
    replay = await client.post("/api/v1/allocate", headers=key)
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.content == first.content
    after = await scrape(client)
    assert value(after, name) == value(before, name) + 1
    # The replay never reached the router; it is still labelled with its route.
    route = "/api/v1/allocate"
    assert requests_of(after, "POST", route, "200") == requests_of(before, "POST", route, "200") + 2


async def test_grace_releases_are_counted(
    app: FastAPI, client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    name = "inbox_allocation_grace_releases_total"
    before = await scrape(client)
    offline = await client.put(
        "/api/v1/operator/status", headers=headers(ACME_OP4), json={"status": "OFFLINE"}
    )
    assert offline.status_code == 200
    await db.execute("UPDATE grace_period_assignments SET expires_at = now() - interval '1 s'")
    result = await GraceSweeper(app.state.db, 100).sweep()
    assert result.released == 2  # 7…05 and 7…07
    after = await scrape(client)
    assert value(after, name) == value(before, name) + 2


# --- Pool and queue gauges -------------------------------------------------------------------


async def test_pool_gauges_follow_the_asyncpg_pool(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    samples = await scrape(client)
    pool = app.state.db.pool
    assert value(samples, "inbox_allocation_db_pool_max_size") == settings.db_max_conns
    assert 1 <= value(samples, "inbox_allocation_db_pool_size") <= pool.get_max_size()
    assert (
        0
        <= value(samples, "inbox_allocation_db_pool_in_use")
        <= value(samples, "inbox_allocation_db_pool_size")
    )
    async with app.state.db.connection():
        held = await scrape(client)
    assert value(held, "inbox_allocation_db_pool_in_use") >= 1


async def queued_of(db: asyncpg.Pool, tenant: str) -> int:
    return int(
        await db.fetchval(
            "SELECT count(*) FROM conversation_refs WHERE tenant_id = $1 AND state = 'QUEUED'",
            uuid.UUID(tenant),
        )
    )


async def add_queued(db: asyncpg.Pool, waited: str) -> None:
    await db.execute(
        "INSERT INTO conversation_refs (tenant_id, inbox_id, external_conversation_id, "
        "customer_phone_number, state, last_message_at, message_count) "
        "VALUES ($1, $2, $3, '+15550000000', 'QUEUED', now() - $4::text::interval, 1)",
        uuid.UUID(ACME),
        uuid.UUID(INBOX_SALES),
        f"metrics-{uuid.uuid4()}",
        waited,
    )


async def test_queue_gauges_per_tenant_are_cached(
    app: FastAPI, client: httpx.AsyncClient, db: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = queue_collector(app)
    monkeypatch.setattr(queue, "ttl", 0.0)  # fresh values now
    await add_queued(db, "400 days")  # older than anything in the seed
    samples = await scrape(client)
    queued = "inbox_allocation_queued_conversations"
    assert value(samples, queued, tenant_id=ACME) == await queued_of(db, ACME)
    assert value(samples, queued, tenant_id=TECHSTART) == await queued_of(db, TECHSTART)
    oldest = value(samples, "inbox_allocation_oldest_queued_wait_seconds", tenant_id=ACME)
    assert 400 * 86400 <= oldest < 400 * 86400 + 60
    assert value(samples, "inbox_allocation_queue_stats_up") == 1

    monkeypatch.setattr(queue, "ttl", 3600.0)  # within the cache period: no new query
    await add_queued(db, "1 minute")
    cached = await scrape(client)
    assert value(cached, queued, tenant_id=ACME) == value(samples, queued, tenant_id=ACME)

    monkeypatch.setattr(queue, "ttl", 0.0)  # period over: the new row shows
    refreshed = await scrape(client)
    assert value(refreshed, queued, tenant_id=ACME) == value(samples, queued, tenant_id=ACME) + 1


async def test_a_tenant_with_nothing_queued_reports_zeros(
    app: FastAPI, client: httpx.AsyncClient, db: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queue_collector(app), "ttl", 0.0)
    await db.execute(
        "UPDATE conversation_refs SET state = 'RESOLVED', assigned_operator_id = NULL, "
        "resolved_at = now() WHERE tenant_id = $1",
        uuid.UUID(TECHSTART),
    )
    samples = await scrape(client)
    assert value(samples, "inbox_allocation_queued_conversations", tenant_id=TECHSTART) == 0
    key = ("inbox_allocation_oldest_queued_wait_seconds", frozenset({("tenant_id", TECHSTART)}))
    assert samples[key] == 0


async def test_scrape_answers_while_the_database_is_down(
    app: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = queue_collector(app)
    monkeypatch.setattr(queue, "ttl", 0.0)
    good = await scrape(client)

    async def unreachable(*_: object) -> None:
        raise ConnectionRefusedError("database down")

    monkeypatch.setattr(app.state.db, "fetch", unreachable)
    response = await client.get("/metrics")
    assert response.status_code == 200
    down = parse(response.text)
    assert value(down, "inbox_allocation_queue_stats_up") == 0
    # The last values are kept (and their age says how old they are).
    queued = "inbox_allocation_queued_conversations"
    assert value(down, queued, tenant_id=ACME) == value(good, queued, tenant_id=ACME)
    assert ("inbox_allocation_queue_stats_age_seconds", frozenset()) in down


async def test_a_slow_database_does_not_hold_the_scrape() -> None:
    collector = metrics.QueueStatsCollector(ttl=0.0, timeout=0.2)

    class Slow:
        async def fetch(self, *_: object) -> list[object]:
            await asyncio.sleep(5)
            return []

    started = time.monotonic()
    await collector.refresh(Slow())  # type: ignore[arg-type]
    assert time.monotonic() - started < 2
    assert [f.name for f in collector.collect()] == ["inbox_allocation_queue_stats_up"]


@pytest.mark.no_db
async def test_scrape_without_any_database_still_answers() -> None:
    # No lifespan ran: there is no pool at all.
    application = create_app(Settings(database_url="postgresql://nobody@127.0.0.1:1/none"))
    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        response = await http.get("/metrics")
    assert response.status_code == 200
    samples = parse(response.text)
    assert value(samples, "inbox_allocation_queue_stats_up") == 0


@pytest.mark.no_db
async def test_metrics_enabled_false_turns_it_off() -> None:
    application = create_app(
        Settings(database_url="postgresql://nobody@127.0.0.1:1/none", metrics_enabled=False)
    )
    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        before = metrics.REGISTRY.get_sample_value(
            "inbox_allocation_http_requests_total",
            {"method": "GET", "route": "unmatched", "status": "404"},
        )
        response = await http.get("/metrics")
        after = metrics.REGISTRY.get_sample_value(
            "inbox_allocation_http_requests_total",
            {"method": "GET", "route": "unmatched", "status": "404"},
        )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"
    assert before == after  # nothing recorded either


@pytest.mark.no_db
def test_metrics_enabled_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METRICS_ENABLED", "false")
    assert Settings().metrics_enabled is False
    monkeypatch.delenv("METRICS_ENABLED")
    assert Settings().metrics_enabled is True


# --- Several workers -------------------------------------------------------------------------

WORKER_SCRIPT = textwrap.dedent("""
    import sys
    from inbox_allocation.observability import metrics
    assert metrics.MULTIPROCESS
    metrics.record_allocation()
    metrics.record_claim("already_claimed")
    metrics.DB_POOL_SIZE.set(int(sys.argv[1]))
""")

RENDER_SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path
    from inbox_allocation.observability import metrics
    if len(sys.argv) > 1:
        metrics.forget_dead_workers(Path(sys.argv[1]))
    sys.stdout.write(metrics.render()[0].decode())
""")


def run_python(script: str, directory: Path, *args: str) -> str:
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(directory))
    result = subprocess.run(
        [sys.executable, "-c", script, *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return result.stdout


@pytest.mark.no_db
def test_multiprocess_mode_merges_every_process(tmp_path: Path) -> None:
    run_python(WORKER_SCRIPT, tmp_path, "3")
    run_python(WORKER_SCRIPT, tmp_path, "4")
    merged = parse(run_python(RENDER_SCRIPT, tmp_path))
    assert value(merged, "inbox_allocation_allocations_total") == 2
    assert value(merged, "inbox_allocation_claim_conflicts_total", reason="already_claimed") == 2
    assert value(merged, "inbox_allocation_db_pool_size") == 7  # livesum
    # Both writers have exited: their live gauges go, their counters stay.
    forgotten = parse(run_python(RENDER_SCRIPT, tmp_path, str(tmp_path)))
    assert value(forgotten, "inbox_allocation_db_pool_size") == 0
    assert value(forgotten, "inbox_allocation_allocations_total") == 2


@pytest.mark.no_db
def test_multiprocess_directory_is_created_and_removed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    with metrics.multiprocess_directory(False) as nothing:
        assert nothing is None
        assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    with metrics.multiprocess_directory(True) as directory:
        assert directory is not None
        assert directory.is_dir()
        assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(directory)
    assert not directory.exists()
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ


@pytest.mark.no_db
def test_a_given_multiprocess_directory_is_cleaned_and_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "counter_123.db").write_bytes(b"stale")
    (tmp_path / "keep.txt").write_text("not ours")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    with metrics.multiprocess_directory(True) as directory:
        assert directory == tmp_path
        assert not (tmp_path / "counter_123.db").exists()
    assert (tmp_path / "keep.txt").exists()


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = world_traversable_tempdir("inbox-allocation-metrics-serve-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.no_db
def test_serve_with_two_workers_merges_their_metrics(workdir: Path) -> None:
    db_port, http_port = free_port(), free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DB_", "DATABASE_URL", "SERVER_", "PROMETHEUS_", "METRICS_"))
    }
    env.update(
        EMBEDDED_DB_DIR=str(workdir / "pg"),
        DB_PORT=str(db_port),
        DB_MIN_CONNS="2",
        DB_MAX_CONNS="7",
        SERVER_PORT=str(http_port),
        SERVER_HOST="127.0.0.1",
        SERVER_WORKERS="2",
        LOG_LEVEL="warning",
        TMPDIR=str(workdir),  # where serve creates PROMETHEUS_MULTIPROC_DIR
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "inbox_allocation", "serve"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=parent_death_signal(),  # noqa: PLW1509 - only prctl
    )
    base = f"http://127.0.0.1:{http_port}"
    try:
        wait_ready(process, base)
        directories = list(workdir.glob("inbox-allocation-metrics-*"))
        assert len(directories) == 1

        for _ in range(20):  # new connections: spread over the workers by the kernel
            assert httpx.get(f"{base}/health", timeout=5).status_code == 200
        # Both workers publish their pools within POOL_SAMPLE_SECONDS of starting.
        deadline = time.monotonic() + 15
        while True:
            samples = parse(httpx.get(f"{base}/metrics", timeout=5).text)
            if value(samples, "inbox_allocation_db_pool_max_size") == 14 or (
                time.monotonic() > deadline
            ):
                break
            time.sleep(0.5)
        assert value(samples, "inbox_allocation_db_pool_max_size") == 14  # 2 workers × 7
        assert requests_of(samples, "GET", "/health", "200") == 20  # whichever worker served

        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
        assert not directories[0].exists()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


# --- The sample Kubernetes manifest ----------------------------------------------------------


@pytest.mark.no_db
def test_the_kubernetes_sample_scrapes_metrics_and_probes_the_right_routes() -> None:
    manifest = REPO_ROOT / "deploy" / "kubernetes.yaml"
    documents = {doc["kind"]: doc for doc in yaml.safe_load_all(manifest.read_text())}
    assert set(documents) == {"Job", "Deployment", "Service"}

    pod = documents["Deployment"]["spec"]["template"]
    annotations = pod["metadata"]["annotations"]
    (container,) = pod["spec"]["containers"]
    port = container["ports"][0]["containerPort"]
    assert annotations == {
        "prometheus.io/scrape": "true",
        "prometheus.io/path": "/metrics",
        "prometheus.io/port": str(port),
    }
    env = {item["name"]: item for item in container["env"]}
    assert env["SERVER_PORT"]["value"] == str(port)
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]["key"] == "DATABASE_URL"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]
    # Several workers need a writable /tmp for PROMETHEUS_MULTIPROC_DIR.
    assert int(env["SERVER_WORKERS"]["value"]) > 1
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]  # noqa: S108

    (migrate,) = documents["Job"]["spec"]["template"]["spec"]["containers"]
    assert migrate["command"] == ["inbox-allocation", "migrate", "up"]
    assert migrate["image"] == container["image"]
    service_port = documents["Service"]["spec"]["ports"][0]
    assert service_port["targetPort"] == container["ports"][0]["name"]
