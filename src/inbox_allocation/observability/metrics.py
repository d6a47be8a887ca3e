"""Prometheus metrics: what is recorded, and `GET /metrics` (text exposition format).

Recorded in-process, on a dedicated registry (never prometheus_client's global one):
- HTTP requests: `inbox_allocation_http_requests_total` and the latency histogram
  `inbox_allocation_http_request_duration_seconds`, by method, route TEMPLATE (never the raw
  path: bounded cardinality; `unmatched` for paths no route serves) and status. Recorded by
  the pure-ASGI request-context middleware with cached label children (O(1) per request).
- Business events, through the `record_*` functions the services call: allocations, claims
  (by outcome), claim conflicts, capacity refusals, grace releases, idempotent replays.
- Database pool: open, in-use and maximum connections (asyncpg pool).

Computed on scrape (not stored): queued conversations and the oldest wait per tenant, from
one aggregate query over all tenants, cached for `QUEUE_STATS_CACHE_SECONDS` so frequent
scrapes do not load the database. If that query fails (database down) the scrape still
answers 200: the last values are kept and `inbox_allocation_queue_stats_up` is 0.

Several uvicorn workers (SERVER_WORKERS > 1): `inbox-allocation serve` creates a fresh
directory, exports it as PROMETHEUS_MULTIPROC_DIR before the workers start and removes it
on exit. prometheus_client then keeps every worker's values in memory-mapped files there,
and a scrape (served by any one worker) merges them all: counters and histograms are summed,
the pool gauges are summed over live workers (`livesum`; each worker samples its own pool
every `POOL_SAMPLE_SECONDS`). The mode is decided once, when this module is imported, like
prometheus_client itself decides it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import asyncpg
from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    multiprocess,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Scope

from inbox_allocation.api.responses import render_api_error
from inbox_allocation.db.pool import Database
from inbox_allocation.domain.errors import Unauthorized
from inbox_allocation.logging import get_logger
from inbox_allocation.sql import stats as sql

log = get_logger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Decided at import, exactly as prometheus_client decides whether values go to files.
MULTIPROCESS = MULTIPROC_ENV in os.environ

METRICS_PATH = "/metrics"
UNMATCHED_ROUTE = "unmatched"
# Methods outside this set are labelled OTHER (a client cannot invent label values).
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

# A ~1–50 ms service: fine buckets there, a few coarse ones for slow outliers (seconds).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5,
                   1.0, 2.5, 5.0)  # fmt: skip

QUEUE_STATS_CACHE_SECONDS = 5.0  # one queue query per process per period, at most
QUEUE_STATS_TIMEOUT_SECONDS = 2.0  # a scrape never waits longer for the database
POOL_SAMPLE_SECONDS = 5.0  # multiprocess mode: how often each worker publishes its pool

# No `*_created` series: they double the output and no dashboard of ours uses them.
disable_created_metrics()  # type: ignore[no-untyped-call]

# This process's metrics. In multiprocess mode the values live in files and a scrape reads
# them all through MultiProcessCollector instead; this registry is then only bookkeeping.
REGISTRY = CollectorRegistry()
if not MULTIPROCESS:  # per-process runtime metrics mean nothing summed over workers
    for _collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        REGISTRY.register(_collector)

HTTP_REQUESTS = Counter(
    "inbox_allocation_http_requests",
    "HTTP requests, by method, route template and status code",
    ["method", "route", "status"],
    registry=REGISTRY,
)
HTTP_DURATION = Histogram(
    "inbox_allocation_http_request_duration_seconds",
    "Time from request start to the end of the response, by method, route template and status",
    ["method", "route", "status"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
ALLOCATIONS = Counter(
    "inbox_allocation_allocations",
    "Conversations allocated to an operator by POST /api/v1/allocate",
    registry=REGISTRY,
)
CLAIMS = Counter(
    "inbox_allocation_claims",
    "POST /api/v1/claim outcomes: claimed, already_owned (the caller's own, returned again), "
    "not_queued and already_claimed (both 409 conflicts)",
    ["outcome"],
    registry=REGISTRY,
)
CLAIM_CONFLICTS = Counter(
    "inbox_allocation_claim_conflicts",
    "Claims refused with 409: not_queued (allocated elsewhere or resolved), already_claimed "
    "(locked by a concurrent claim)",
    ["reason"],
    registry=REGISTRY,
)
CAPACITY_REFUSALS = Counter(
    "inbox_allocation_capacity_refusals",
    "allocate/claim refused with 409 CAPACITY_REACHED (operator at max_concurrent_conversations)",
    ["action"],
    registry=REGISTRY,
)
GRACE_RELEASES = Counter(
    "inbox_allocation_grace_releases",
    "Conversations returned to the queue by the grace sweeper (operator stayed OFFLINE)",
    registry=REGISTRY,
)
IDEMPOTENT_REPLAYS = Counter(
    "inbox_allocation_idempotent_replays",
    "Requests answered from a stored idempotent response (Idempotent-Replayed: true)",
    registry=REGISTRY,
)
DB_POOL_SIZE = Gauge(
    "inbox_allocation_db_pool_size",
    "Open database connections in the pool (summed over live workers)",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
DB_POOL_IN_USE = Gauge(
    "inbox_allocation_db_pool_in_use",
    "Database connections currently lent out to requests or workers (summed over live workers)",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
DB_POOL_MAX = Gauge(
    "inbox_allocation_db_pool_max_size",
    "Configured maximum of the pool, DB_MAX_CONNS (summed over live workers)",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)

ClaimOutcome = Literal["claimed", "already_owned", "not_queued", "already_claimed"]
CapacityAction = Literal["allocate", "claim"]
CLAIM_OUTCOMES: tuple[ClaimOutcome, ...] = (
    "claimed", "already_owned", "not_queued", "already_claimed",
)  # fmt: skip
CONFLICT_OUTCOMES: tuple[ClaimOutcome, ...] = ("not_queued", "already_claimed")
CAPACITY_ACTIONS: tuple[CapacityAction, ...] = ("allocate", "claim")

# Label children created up front: every series exists (at 0) from the first scrape, so
# rate() and alerts work before the first event, and recording skips the label lookup.
_CLAIMS = {outcome: CLAIMS.labels(outcome=outcome) for outcome in CLAIM_OUTCOMES}
_CLAIM_CONFLICTS = {reason: CLAIM_CONFLICTS.labels(reason=reason) for reason in CONFLICT_OUTCOMES}
_CAPACITY_REFUSALS = {
    action: CAPACITY_REFUSALS.labels(action=action) for action in CAPACITY_ACTIONS
}


# --- Business events (called by the services) ----------------------------------------------


def record_allocation() -> None:
    """POST /allocate handed a conversation to the caller."""
    ALLOCATIONS.inc()


def record_claim(outcome: ClaimOutcome) -> None:
    """A claim reached its conversation; the two conflict outcomes also count as conflicts."""
    _CLAIMS[outcome].inc()
    conflict = _CLAIM_CONFLICTS.get(outcome)
    if conflict is not None:
        conflict.inc()


def record_capacity_refusal(action: CapacityAction) -> None:
    """allocate or claim answered 409 CAPACITY_REACHED."""
    _CAPACITY_REFUSALS[action].inc()


def record_grace_release(count: int) -> None:
    """The grace sweeper returned `count` conversations to the queue (0 is a no-op)."""
    if count > 0:
        GRACE_RELEASES.inc(count)


def record_idempotent_replay() -> None:
    """A stored response was replayed for a repeated Idempotency-Key."""
    IDEMPOTENT_REPLAYS.inc()


# --- HTTP requests (called by the request-context middleware) -------------------------------


class RouteTemplates:
    """The route template of a request, for the `route` label.

    Routed requests carry their route in the ASGI scope (O(1)). A request answered before
    routing (an idempotent replay, a CORS preflight, an early 413) is matched against the
    application's route patterns; a path no route serves is `unmatched`.
    """

    def __init__(self, routes: Iterable[BaseRoute]) -> None:
        self._patterns: list[tuple[re.Pattern[str], str]] = [
            (route.path_regex, route.path_format) for route in routes if isinstance(route, Route)
        ]

    def of(self, scope: Scope) -> str:
        template = getattr(scope.get("route"), "path_format", None)
        if isinstance(template, str):
            return template
        path = scope["path"]
        for pattern, candidate in self._patterns:
            if pattern.match(path):
                return candidate
        return UNMATCHED_ROUTE


class RequestMetrics:
    """Request count and latency. One dict lookup, one increment and one observation per
    request; label children are created once per (method, route, status) and cached (the
    key space is bounded: known methods × route templates × status codes)."""

    def __init__(self, routes: RouteTemplates) -> None:
        self.routes = routes
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def observe(self, scope: Scope, status: int, seconds: float) -> None:
        method = scope["method"] if scope["method"] in KNOWN_METHODS else "OTHER"
        key = (method, self.routes.of(scope), status)
        children = self._children.get(key)
        if children is None:
            labels = {"method": method, "route": key[1], "status": str(status)}
            children = (HTTP_REQUESTS.labels(**labels), HTTP_DURATION.labels(**labels))
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)


# --- Database pool ---------------------------------------------------------------------------


def sample_pool(pool: asyncpg.Pool) -> None:
    size = pool.get_size()
    DB_POOL_SIZE.set(size)
    DB_POOL_IN_USE.set(size - pool.get_idle_size())
    DB_POOL_MAX.set(pool.get_max_size())


class PoolSampler:
    """Multiprocess mode: each worker publishes its pool every few seconds (a scrape is
    served by one worker, which can only sample its own pool). On start it forgets workers
    that died without saying so; on stop it removes its own live gauges."""

    def __init__(self, db: Database, interval: float = POOL_SAMPLE_SECONDS) -> None:
        self.db = db
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        forget_dead_workers(Path(os.environ[MULTIPROC_ENV]))
        sample_pool(self.db.pool)
        self._task = asyncio.create_task(self._loop(), name="metrics-pool-sampler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            sample_pool(self.db.pool)


def start_pool_sampler(db: Database) -> PoolSampler | None:
    """The sampler, started, in multiprocess mode; None otherwise (a scrape samples the one
    pool itself)."""
    if not MULTIPROCESS:
        return None
    sampler = PoolSampler(db)
    sampler.start()
    return sampler


_LIVE_GAUGE_FILE = re.compile(r"gauge_live\w+?_(\d+)\.db")


def forget_dead_workers(directory: Path) -> None:
    """Remove the live-gauge files of worker processes that no longer exist."""
    for path in directory.glob("gauge_live*.db"):
        match = _LIVE_GAUGE_FILE.fullmatch(path.name)
        if match and not _process_exists(int(match.group(1))):
            pid = int(match.group(1))
            multiprocess.mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


@contextmanager
def multiprocess_directory(enabled: bool) -> Iterator[Path | None]:
    """For `serve` with several workers: PROMETHEUS_MULTIPROC_DIR, set before they start.

    A directory given by the operator is used (its stale files removed, as prometheus_client
    requires between runs); otherwise a fresh temporary one is created and removed on exit.
    """
    if not enabled:
        yield None
        return
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        directory = Path(given)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):
            stale.unlink()
        yield directory
        return
    directory = Path(tempfile.mkdtemp(prefix="inbox-allocation-metrics-"))
    os.environ[MULTIPROC_ENV] = str(directory)
    try:
        yield directory
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(directory, ignore_errors=True)


# --- Queue gauges (computed on scrape) --------------------------------------------------------


class QueueStatsCollector(Collector):
    """Queued conversations and oldest wait per tenant, from one cached aggregate query.

    `refresh` runs the query at most once per `ttl` (concurrent scrapes share one run) and
    within `timeout`; a failure keeps the previous values and reports `up` 0, so the scrape
    itself never fails. `collect` only reads the cached snapshot.
    """

    def __init__(
        self,
        ttl: float = QUEUE_STATS_CACHE_SECONDS,
        timeout: float = QUEUE_STATS_TIMEOUT_SECONDS,
    ) -> None:
        self.ttl = ttl
        self.timeout = timeout
        self._rows: list[tuple[str, int, float]] = []
        self._taken_at: float | None = None  # monotonic time of the values shown
        self._attempted_at = -math.inf
        self._up = False
        self._lock = asyncio.Lock()

    def _fresh(self) -> bool:
        return time.monotonic() - self._attempted_at < self.ttl

    async def refresh(self, db: Database) -> None:
        if self._fresh():
            return
        async with self._lock:
            if self._fresh():  # another scrape refreshed while this one waited
                return
            self._attempted_at = time.monotonic()
            try:
                async with asyncio.timeout(self.timeout):
                    rows = await db.fetch(sql.QUEUE_BY_TENANT)
            except Exception as exc:  # any failure: the scrape must still answer
                self._up = False
                log.warning("queue metrics not refreshed", error=f"{type(exc).__name__}: {exc}")
                return
            self._rows = [
                (row["tenant_id"], row["queued"], row["oldest_wait_seconds"]) for row in rows
            ]
            self._taken_at = time.monotonic()
            self._up = True

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "inbox_allocation_queue_stats_up",
            "1 when the last refresh of the per-tenant queue gauges succeeded, else 0",
            value=1 if self._up else 0,
        )
        yield up
        if self._taken_at is None:
            return
        yield GaugeMetricFamily(
            "inbox_allocation_queue_stats_age_seconds",
            "Age of the per-tenant queue values shown (cached; older when the database is down)",
            value=time.monotonic() - self._taken_at,
        )
        queued = GaugeMetricFamily(
            "inbox_allocation_queued_conversations",
            "QUEUED conversations per tenant",
            labels=["tenant_id"],
        )
        oldest = GaugeMetricFamily(
            "inbox_allocation_oldest_queued_wait_seconds",
            "Seconds since the last message of the tenant's longest-waiting QUEUED "
            "conversation (0 when none is queued)",
            labels=["tenant_id"],
        )
        for tenant_id, count, wait in self._rows:
            queued.add_metric([tenant_id], count)
            oldest.add_metric([tenant_id], wait)
        yield queued
        yield oldest


class _Scrape(Collector):
    """Everything one scrape shows: the recorded metrics (this process's, or every worker's
    files in multiprocess mode) followed by the gauges computed on scrape."""

    def __init__(self, *sources: Collector) -> None:
        self.sources = sources

    def collect(self) -> Iterator[Metric]:
        for source in self.sources:
            yield from source.collect()


def _recorded() -> Collector:
    if MULTIPROCESS:
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
        return merged
    return REGISTRY


def render(*computed: Collector, accept: str = "") -> tuple[bytes, str]:
    """The exposition (body, content type): recorded metrics plus `computed` collectors, in
    the format the Accept header asks for (Prometheus text by default, or OpenMetrics)."""
    encoder, content_type = choose_encoder(accept)
    return encoder(_Scrape(_recorded(), *computed)), content_type


class MetricsEndpoint:
    """GET /metrics: no identity headers, never a 500 because of the database. With a
    bearer token (METRICS_BEARER_TOKEN) a scrape without it is 401: the samples name every
    tenant."""

    def __init__(self, bearer_token: str | None = None) -> None:
        self.queue = QueueStatsCollector()
        self.expected = f"Bearer {bearer_token}".encode() if bearer_token else None

    async def handle(self, request: Request) -> Response:
        if self.expected is not None and not hmac.compare_digest(
            request.headers.get("authorization", "").encode("latin-1"), self.expected
        ):
            error = Unauthorized("a metrics bearer token is required")
            return render_api_error(error, challenge=True)
        db: Database | None = getattr(request.app.state, "db", None)
        if db is not None:
            await self.queue.refresh(db)
            sample_pool(db.pool)
        body, content_type = render(self.queue, accept=request.headers.get("accept", ""))
        return Response(body, headers={"Content-Type": content_type})


def install(
    app: Starlette, routes: Iterable[BaseRoute], bearer_token: str | None = None
) -> RequestMetrics:
    """Serve GET /metrics on `app` (its endpoint kept as `app.state.metrics_endpoint`) and
    return the request recorder for the middleware, which resolves unrouted requests against
    `routes` (the application's API routes)."""
    endpoint = MetricsEndpoint(bearer_token)
    app.state.metrics_endpoint = endpoint
    app.add_route(METRICS_PATH, endpoint.handle, methods=["GET"], include_in_schema=False)
    # FastAPI records only its API routes in the scope; /metrics is found by its pattern.
    scrape_route = Route(METRICS_PATH, endpoint.handle, methods=["GET"])
    return RequestMetrics(RouteTemplates([*routes, scrape_route]))
