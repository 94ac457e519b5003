"""A small HTTP/1.1 load generator, for machines without ``wrk``.

``--connections`` keep-alive connections each send one GET after another for
``--duration`` seconds; prints one JSON line: requests, non-2xx answers, errors, seconds,
requests per second, p50/p99 latency in ms. Run as its own process, so it does not share
the server's CPU time slice:

    .venv/bin/python -m benchmarks.loadgen --port 8000 --path /me --cookie "_auth=..."
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from benchmarks.http_client import HttpClient
from benchmarks.stats import percentile


async def run(
    port: int, path: str, cookie: str, connections: int, duration: float
) -> dict[str, float]:
    cookies = dict(part.split("=", 1) for part in cookie.split("; ")) if cookie else None
    request = HttpClient.encode(port, path, cookies)
    latencies: list[float] = []
    counts = {"non_2xx": 0, "errors": 0}
    deadline = time.perf_counter() + duration

    async def worker() -> None:
        try:
            client = await HttpClient.connect(port)
        except OSError:
            counts["errors"] += 1
            return
        try:
            while (start := time.perf_counter()) < deadline:
                response = await client.get(request)
                latencies.append(time.perf_counter() - start)
                if not 200 <= response.status < 300:
                    counts["non_2xx"] += 1
        except (OSError, asyncio.IncompleteReadError):
            counts["errors"] += 1
        finally:
            await client.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    seconds = time.perf_counter() - started
    return {
        "requests": len(latencies),
        "non_2xx": counts["non_2xx"],
        "errors": counts["errors"],
        "seconds": seconds,
        "rps": len(latencies) / seconds,
        "p50_ms": percentile(latencies, 0.50) * 1e3 if latencies else 0.0,
        "p99_ms": percentile(latencies, 0.99) * 1e3 if latencies else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/")
    parser.add_argument("--cookie", default="", help="the Cookie header's value")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration", type=float, default=5.0)
    args = parser.parse_args()
    result = asyncio.run(run(args.port, args.path, args.cookie, args.connections, args.duration))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
