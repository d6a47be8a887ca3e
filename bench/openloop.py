"""An open-loop load generator for POST /api/v1/allocate: latency as users feel it.

wrk is closed-loop: a slow answer delays the next request, so the latencies it reports leave
out the time requests would have waited (coordinated omission). Here request i is *scheduled*
at start + i / rate, whatever happened before, and its latency counts from that instant: a
request that found every connection busy waits, and the wait is part of its latency.

`python -m bench.openloop URL IDENTITIES --rate R --duration S [--connections N]` prints one
line `BENCH_JSON {...}` (the shape of bench.loadgen.LoadResult). Requests go round-robin over
the identity file's operators (bench.data.write_identities), one keep-alive HTTP/1.1
connection per operator; with more requests in flight than connections, requests queue for
a free connection in schedule order. Runs in its own process, so the harness counts its CPU as
the load generator's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit


async def _open(host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(host, port)


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> str:
    """Send one request, read the whole response; returns the status code."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = lines[0].split(" ", 2)[1]
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return status


def _percentile(sorted_ms: list[float], q: float) -> float:
    if not sorted_ms:
        return 0.0
    return sorted_ms[min(len(sorted_ms) - 1, int(q * len(sorted_ms)))]


async def run(url: str, identities: list[str], rate: float, duration: float) -> dict[str, object]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    requests = []
    for line in identities:
        tenant, operator = line.split()[:2]
        requests.append(
            (
                f"POST /api/v1/allocate HTTP/1.1\r\nHost: {host}:{port}\r\n"
                f"X-Tenant-ID: {tenant}\r\nX-Operator-ID: {operator}\r\n"
                "Content-Length: 0\r\n\r\n"
            ).encode()
        )
    free: asyncio.Queue[int] = asyncio.Queue()
    conns = [await _open(host, port) for _ in requests]
    for index in range(len(conns)):
        free.put_nowait(index)
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    total = int(rate * duration)
    start = time.monotonic() + 0.05

    async def one(i: int) -> None:
        scheduled = start + i / rate
        index = await free.get()  # in schedule order: the queue is FIFO
        reader, writer = conns[index]
        try:
            status = await _exchange(reader, writer, requests[index])
            statuses[status] += 1
            latencies.append((time.monotonic() - scheduled) * 1000)
        except (OSError, asyncio.IncompleteReadError) as exc:
            errors[type(exc).__name__] += 1
            conns[index] = await _open(host, port)
        finally:
            free.put_nowait(index)

    tasks = []
    for i in range(total):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    elapsed = time.monotonic() - start
    for _, writer in conns:
        writer.close()
    ordered = sorted(latencies)
    return {
        "tool": "openloop",
        "connections": len(conns),
        "duration_s": elapsed,
        "requests": len(latencies),
        "latency_ms": {
            "p50": _percentile(ordered, 0.50),
            "p95": _percentile(ordered, 0.95),
            "p99": _percentile(ordered, 0.99),
            "max": ordered[-1] if ordered else 0.0,
        },
        "statuses": dict(statuses),
        "errors": dict(errors),
        "offered_per_s": rate,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.openloop")
    parser.add_argument("url")
    parser.add_argument("identities", type=Path)
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--duration", type=float, required=True, help="seconds")
    args = parser.parse_args(argv)
    lines = args.identities.read_text().splitlines()
    result = asyncio.run(run(args.url, lines, args.rate, args.duration))
    print("BENCH_JSON " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
