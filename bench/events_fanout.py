"""`python -m bench.events_fanout`: 1,000 SSE readers on one worker — latency and /allocate cost.

Starts the service (one uvicorn worker, embedded PostgreSQL, demo data) and measures:

1. allocate, no readers — allocate + deallocate pairs from CONCURRENCY client loops for
   PHASE seconds (every pair writes two events), with the service's CPU per pair;
2. allocate, 1,000 readers — the same with READERS open SSE streams of Acme's manager,
   filtered to `operator.status_changed` (so the streams stay open and registered with the
   worker's hub, which reads and hands every batch to all of them), held by a child process
   (the load generator's own process stays as in (1)); then (1) again,
   and the change is taken against the mean of the two runs without readers;
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
import multiprocessing
import os
import shutil
import statistics
import time
import uuid
from datetime import UTC, datetime
from multiprocessing.connection import Connection
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
    """READERS open SSE streams; records when each event id reaches each reader.

    Plain asyncio sockets and a byte search per received chunk, not an HTTP client library:
    the readers share the machine (and this process) with the service under test, and a
    client that parses every frame of 1,000 streams would measure itself."""

    def __init__(self, base: str, count: int, params: dict[str, str]) -> None:
        self.count, self.params = count, params
        url = httpx.URL(base)
        self.host, self.port = str(url.host), int(url.port or 80)
        self.arrivals: dict[str, list[float]] = {}
        self.open = 0
        self.tasks: list[asyncio.Task[None]] = []

    def _request(self) -> bytes:
        query = str(httpx.QueryParams(self.params))
        path = "/api/v1/events" + (f"?{query}" if query else "")
        headers = {**who(MANAGER), "Accept": "text/event-stream", "Host": f"{self.host}"}
        lines = [f"GET {path} HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items()), "", ""]
        return "\r\n".join(lines).encode()

    async def _read(self) -> None:
        reader, writer = await asyncio.open_connection(self.host, self.port, limit=1 << 20)
        try:
            writer.write(self._request())
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"stream refused: {head[:200]!r}")
            self.open += 1
            marker = _EXTERNAL.encode()
            tail = b""
            while True:
                chunk = await reader.read(1 << 16)
                if not chunk:
                    return
                now = time.monotonic()
                # Keyed by the conversation's external id; a frame split across two reads is
                # found in the kept tail of the previous read.
                text = tail + chunk
                start = text.find(marker)
                last_end = 0
                while start >= 0:
                    start += len(marker)
                    end = text.find(b'"', start)
                    if end < 0:
                        break
                    external = text[start:end].decode()
                    self.arrivals.setdefault(external, []).append(now)
                    last_end = end
                    start = text.find(marker, end)
                tail = text[max(last_end, len(text) - 200) :]
        finally:
            writer.close()

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


def _hold_idle_readers(base: str, count: int, ready: Connection) -> None:
    async def hold() -> None:
        readers = Readers(base, count, {"types": "operator.status_changed"})
        await readers.start()
        ready.send(True)
        await asyncio.Event().wait()  # until terminated

    asyncio.run(hold())


def start_idle_readers(base: str, count: int) -> multiprocessing.Process:
    """`count` open SSE streams held by a child process, so that this process, which
    generates the /allocate load, does not also carry a thousand sockets (its own slowdown
    would read as the service's)."""
    parent, child = multiprocessing.Pipe()
    process = multiprocessing.Process(target=_hold_idle_readers, args=(base, count, child),
                                      daemon=True)  # fmt: skip
    process.start()
    if not parent.poll(120):
        process.terminate()
        raise RuntimeError("the idle readers did not connect within 120 s")
    parent.recv()
    return process


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process (the service: one worker serves in-process)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def allocate_phase(base: str, args: argparse.Namespace, pid: int) -> dict[str, float]:
    """Pairs per second, and the service's CPU per pair (what the machine's other load
    barely moves, unlike the throughput)."""
    cpu = cpu_seconds(pid)
    started = time.monotonic()
    per_s = await allocate_load(base, args.seconds, args.concurrency)
    pairs = per_s * (time.monotonic() - started)
    used = cpu_seconds(pid) - cpu
    return {"per_s": round(per_s, 1), "service_cpu_us_per_pair": round(1e6 * used / pairs, 1)
            if pairs else 0.0}  # fmt: skip


async def measure(base: str, args: argparse.Namespace, pid: int) -> dict[str, Any]:
    """Allocation without readers, with them, without again (the mean of the two runs
    without is the reference, so a drift of the machine's load during the run cancels out),
    then the latency phase."""
    result: dict[str, Any] = {"readers": args.readers, "phase_seconds": args.seconds,
                              "concurrency": args.concurrency}  # fmt: skip
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        for n in range(200):  # enough queued conversations for every client loop
            await http.post("/api/v1/conversations", headers=who(MANAGER), json={
                "inbox_id": INBOX, "external_conversation_id": f"fanout-queue-{n}",
                "customer_phone_number": "+14155550101"})  # fmt: skip
    await allocate_load(base, 3, args.concurrency)  # warm-up
    before = await allocate_phase(base, args, pid)
    idle = start_idle_readers(base, args.readers)
    try:
        with_readers = await allocate_phase(base, args, pid)
    finally:
        idle.terminate()
        idle.join(10)
    after = await allocate_phase(base, args, pid)
    without = (before["per_s"] + after["per_s"]) / 2
    cpu_without = (before["service_cpu_us_per_pair"] + after["service_cpu_us_per_pair"]) / 2
    result["allocate_runs"] = {"without": before, "with": with_readers, "without again": after}
    result["allocate_per_s_no_readers"] = round(without, 1)
    result["allocate_per_s_with_readers"] = with_readers["per_s"]
    result["allocate_change_pct"] = round(100 * (with_readers["per_s"] / without - 1), 1)
    result["service_cpu_change_pct"] = round(
        100 * (with_readers["service_cpu_us_per_pair"] / cpu_without - 1), 1
    )
    live = Readers(base, args.readers, {})
    await live.start()
    try:
        result["latency"] = await latency(base, live, args.seconds, args.rate)
    finally:
        await live.stop()
    result["loadavg"] = [round(x, 2) for x in os.getloadavg()]
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
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    args = parser.parse_args()
    workdir = world_traversable_tempdir("inbox-allocation-fanout-")
    log = workdir / "service.log"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = start_service(workdir, free_port(), port, log, "--seed")
    try:
        wait_ready(process, base, output=lambda: log.read_text(errors="replace"))
        result = asyncio.run(measure(base, args, process.pid))
    finally:
        stop_service(process)
        shutil.rmtree(workdir, ignore_errors=True)
    result["at"] = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    args.results_dir.mkdir(parents=True, exist_ok=True)
    path = args.results_dir / f"events-fanout-{result['at']}.json"
    path.write_text(json.dumps(result, indent=2))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
