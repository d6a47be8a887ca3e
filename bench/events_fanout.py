"""`python -m bench.events_fanout`: 1,000 SSE readers on one worker — latency and /allocate cost.

Starts the service (one uvicorn worker, embedded PostgreSQL, demo data) and measures:

1. allocate, no readers — allocate + deallocate pairs from CONCURRENCY client loops for
   PHASE seconds (every pair writes two events);
2. allocate, 1,000 readers — the same with READERS open SSE streams of Acme's manager,
   filtered to `operator.status_changed` (so the streams stay open and registered with the
   worker's hub, which reads and hands every batch to all of them, while this one load
   generator process does not have to parse 1,000 copies of every event);
3. latency, 1,000 readers — READERS unfiltered SSE streams receive every event while
   conversations are ingested at INGEST_RATE per second; commit-to-delivery is measured from
   just before each POST is sent (an upper bound: the commit happens later) to the frame's
   arrival at each reader. p50 / p99 / max over every (event, reader) pair.

Prints one JSON object and writes it to bench/results/events-fanout-<timestamp>.json. The
load generator shares the machine with the service: figures are lower bounds of what the
service does on its own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import statistics
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from inbox_allocation.processes import free_port, wait_ready, world_traversable_tempdir
from tools.docs_check import start_service, stop_service

TENANT = "10000000-0000-0000-0000-000000000001"
MANAGER = "30000000-0000-0000-0000-000000000002"
# AVAILABLE Acme operators subscribed to queues holding demo conversations.
OPERATORS = (
    "30000000-0000-0000-0000-000000000004",
    "30000000-0000-0000-0000-000000000005",
    "30000000-0000-0000-0000-000000000007",
    "30000000-0000-0000-0000-000000000008",
    "30000000-0000-0000-0000-000000000010",
)
INBOX = "20000000-0000-0000-0000-000000000001"
RESULTS = Path(__file__).resolve().parent / "results"
_EXTERNAL = '"external_conversation_id":"'


def who(operator: str) -> dict[str, str]:
    return {"X-Tenant-ID": TENANT, "X-Operator-ID": operator}


async def allocate_load(base: str, seconds: float, concurrency: int) -> float:
    """Allocations per second (each followed by its deallocation)."""
    done = 0
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=concurrency * 2)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as http:

        async def loop(operator: str) -> None:
            nonlocal done
            while time.monotonic() < deadline:
                response = await http.post("/api/v1/allocate", headers=who(operator))
                if response.status_code != 200:
                    await asyncio.sleep(0.005)  # nothing queued for it right now
                    continue
                conversation = response.json()["data"]["id"]
                await http.post("/api/v1/deallocate", json={"conversation_id": conversation},
                                headers=who(MANAGER))  # fmt: skip
                done += 1

        started = time.monotonic()
        await asyncio.gather(*(loop(OPERATORS[i % len(OPERATORS)]) for i in range(concurrency)))
        return done / (time.monotonic() - started)


class Readers:
    """READERS open SSE streams; records when each event id reaches each reader."""

    def __init__(self, base: str, count: int, params: dict[str, str]) -> None:
        self.base, self.count, self.params = base, count, params
        self.arrivals: dict[str, list[float]] = {}
        self.open = 0
        self.tasks: list[asyncio.Task[None]] = []
        self.http = httpx.AsyncClient(
            base_url=base, timeout=httpx.Timeout(10, read=None),
            limits=httpx.Limits(max_connections=count + 10),
        )  # fmt: skip

    async def _read(self) -> None:
        headers = {**who(MANAGER), "Accept": "text/event-stream"}
        async with self.http.stream("GET", "/api/v1/events", params=self.params,
                                    headers=headers) as response:  # fmt: skip
            self.open += 1
            async for line in response.aiter_lines():
                # Keyed by the conversation's external id (no JSON parsing per frame).
                start = line.find(_EXTERNAL)
                if line.startswith("data: ") and start >= 0:
                    start += len(_EXTERNAL)
                    external = line[start : line.index('"', start)]
                    self.arrivals.setdefault(external, []).append(time.monotonic())

    async def start(self) -> None:
        for _ in range(self.count):
            self.tasks.append(asyncio.create_task(self._read()))
            await asyncio.sleep(0.002)  # a steady ramp, not a thundering herd
        while self.open < self.count:
            if any(task.done() for task in self.tasks):
                failed = next(task for task in self.tasks if task.done())
                raise RuntimeError(f"a reader failed: {failed.exception()!r}")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(BaseException):
                await task
        await self.http.aclose()


async def latency(base: str, readers: Readers, seconds: float, rate: float) -> dict[str, Any]:
    sent: dict[str, float] = {}
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            external = f"fanout-{uuid.uuid4().hex[:12]}"
            started = time.monotonic()
            response = await http.post(
                "/api/v1/conversations",
                json={"inbox_id": INBOX, "external_conversation_id": external,
                      "customer_phone_number": "+14155550100"},
                headers=who(MANAGER),
            )  # fmt: skip
            response.raise_for_status()
            sent[external] = started
            await asyncio.sleep(max(0.0, 1 / rate - (time.monotonic() - started)))
        await asyncio.sleep(2.0)  # the last deliveries
    samples: list[float] = []
    missing = 0
    for external, started in sent.items():
        arrivals = readers.arrivals.get(external, [])
        missing += readers.count - len(arrivals)
        samples += [(arrival - started) * 1000 for arrival in arrivals]
    samples.sort()
    return {
        "events": len(sent),
        "deliveries": len(samples),
        "missing_deliveries": missing,
        "p50_ms": round(statistics.median(samples), 1),
        "p99_ms": round(samples[int(len(samples) * 0.99) - 1], 1),
        "max_ms": round(samples[-1], 1),
    }


async def measure(base: str, args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"readers": args.readers, "phase_seconds": args.seconds,
                              "concurrency": args.concurrency}  # fmt: skip
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        for n in range(200):  # enough queued conversations for every client loop
            await http.post("/api/v1/conversations", headers=who(MANAGER), json={
                "inbox_id": INBOX, "external_conversation_id": f"fanout-queue-{n}",
                "customer_phone_number": "+14155550101"})  # fmt: skip
    await allocate_load(base, 3, args.concurrency)  # warm-up
    result["allocate_per_s_no_readers"] = round(
        await allocate_load(base, args.seconds, args.concurrency), 1
    )
    idle = Readers(base, args.readers, {"types": "operator.status_changed"})
    await idle.start()
    try:
        result["allocate_per_s_with_readers"] = round(
            await allocate_load(base, args.seconds, args.concurrency), 1
        )
    finally:
        await idle.stop()
    result["allocate_change_pct"] = round(
        100 * (result["allocate_per_s_with_readers"] / result["allocate_per_s_no_readers"] - 1), 1
    )
    live = Readers(base, args.readers, {})
    await live.start()
    try:
        result["latency"] = await latency(base, live, args.seconds, args.rate)
    finally:
        await live.stop()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.events_fanout",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--readers", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rate", type=float, default=5.0, help="ingests per second (latency)")
    args = parser.parse_args()
    workdir = world_traversable_tempdir("inbox-allocation-fanout-")
    log = workdir / "service.log"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = start_service(workdir, free_port(), port, log, "--seed")
    try:
        wait_ready(process, base, output=lambda: log.read_text(errors="replace"))
        result = asyncio.run(measure(base, args))
    finally:
        stop_service(process)
        shutil.rmtree(workdir, ignore_errors=True)
    result["at"] = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"events-fanout-{result['at']}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
