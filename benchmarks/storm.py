"""Refresh storms: N concurrent requests due for a refresh with the same refresh token must
make exactly one refresh-callback call, and all get the same new cookies.

(a) in-process: ``benchmarks.bench_app`` driven through its ASGI callable, N requests
    concurrently on one event loop; the callback counts its calls and takes 20 ms.
(b) two real uvicorn workers (``--workers 2``) sharing a real redis-server
    (``shared_store=RedisStore``); the callback INCRs a Redis counter, so calls are
    counted across processes, and takes 20 ms. The N requests go out on N already open
    keep-alive connections, alternating between the two workers.

Every storm uses a fresh session (``/login``, then its access cookie dropped, as a browser
drops it when it expires; the state cookie pairs only with the access token it was issued
with, so a token minted here could not stand in for it). For each N: callback calls per
storm (must be 1), whether every answer was 200 with one and the same successor refresh
cookie, how many workers answered, and p50/p99 latency of the storm's requests (from the
moment the storm starts) relative to a single refresh (N=1); with two workers also each
worker's median, fastest first (the worker whose request ran the callback, then the one
that waits for the result in Redis); and the same N with valid tokens (no refresh), which
shows what plain queueing costs.

uvicorn runs through ``benchmarks.serve``, uvicorn's own CLI with TCP_NODELAY kept under
``--workers`` (plain ``uvicorn --workers 2`` adds ~40 ms Nagle stalls; see there).

    .venv/bin/python -m benchmarks.storm [--sizes 1 10 100 200] [--storms 5]
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import anyio
from fastapi import FastAPI
from redis.asyncio import Redis

from benchmarks.asgi import call
from benchmarks.bench_app import CALLS_KEY, Settings, create_app
from benchmarks.cookies import request_headers
from benchmarks.http_client import HttpClient, http_get
from benchmarks.servers import redis_server, uvicorn_server, workdir
from benchmarks.stats import median, percentile
from benchmarks.targets import TIMES, Target, bench_parser, finish, stop_on_sigterm

CALLBACK_DELAY = 0.02
ACCESS, REFRESH = "_auth", "_auth_refresh"


@dataclass
class Storm:
    """What one storm of N requests did."""

    calls: int
    statuses: list[int]
    successors: set[str | None]
    latencies: list[float]
    pids: list[int]  # which worker answered each request, in the order of latencies

    def by_worker(self) -> list[float]:
        """Median latency of each worker's answers, fastest first."""
        groups: dict[int, list[float]] = {}
        for latency, pid in zip(self.latencies, self.pids, strict=True):
            groups.setdefault(pid, []).append(latency)
        return sorted(median(group) for group in groups.values())

    @property
    def exactly_once(self) -> bool:
        return (
            self.calls == 1
            and set(self.statuses) == {200}
            and len(self.successors) == 1
            and None not in self.successors
        )


@dataclass
class Series:
    """All storms of one size, plus the no-refresh storms of the same size."""

    n: int
    storms: list[Storm] = field(default_factory=list)
    plain: list[float] = field(default_factory=list)

    @property
    def latencies(self) -> list[float]:
        return [lat for storm in self.storms for lat in storm.latencies]


StormRunner = Callable[[int, bool], Awaitable[Storm]]


async def run_series(sizes: Sequence[int], storms: int, run: StormRunner) -> list[Series]:
    """Storms of each size, sizes interleaved so load drifts hit every size alike."""
    series = [Series(n) for n in sizes]
    # Warm-up: connections, routes, caches, and each worker's Redis connection and scripts.
    await run(max(sizes), True)
    await run(max(sizes), False)
    for _ in range(storms):
        for s in series:
            s.storms.append(await run(s.n, True))
            s.plain.extend((await run(s.n, False)).latencies)
    return series


def report(title: str, series: list[Series], mode: str) -> list[Target]:
    single = median(series[0].latencies) if series[0].n == 1 else None
    print(f"\n{title}")
    print(
        f"{'N':>4s} {'calls/storm':>14s} {'all 200':>7s} {'succ.':>5s} {'workers':>7s} "
        f"{'p50 ms':>7s} {'p99 ms':>7s} {'p50/N=1':>8s} {'p99/N=1':>8s} "
        f"{'p50 per worker':>14s} {'no-refresh p50/p99 ms':>21s}"
    )
    targets = []
    for s in series:
        lat = s.latencies
        p50, p99 = percentile(lat, 0.5), percentile(lat, 0.99)
        calls = ",".join(str(storm.calls) for storm in s.storms)
        ok = all(set(storm.statuses) == {200} for storm in s.storms)
        successors = max(len(storm.successors) for storm in s.storms)
        workers = max(len(set(storm.pids)) for storm in s.storms)
        split = [storm.by_worker() for storm in s.storms if len(set(storm.pids)) > 1]
        per_worker = (
            " / ".join(f"{median(ws) * 1e3:.1f}" for ws in zip(*split, strict=False))
            if split
            else "-"
        )
        rel = (
            f"{p50 / single:7.2f}{TIMES} {p99 / single:7.2f}{TIMES}"
            if single
            else f"{'-':>8s} {'-':>8s}"
        )
        plain = f"{percentile(s.plain, 0.5) * 1e3:.1f} / {percentile(s.plain, 0.99) * 1e3:.1f}"
        print(
            f"{s.n:4d} {calls:>14s} {'yes' if ok else 'NO':>7s} {successors:5d} {workers:7d} "
            f"{p50 * 1e3:7.1f} {p99 * 1e3:7.1f} {rel} {per_worker:>14s} {plain:>21s}"
        )
        passed = all(storm.exactly_once for storm in s.storms)
        detail = f"callback calls per storm {calls}; " + (
            "every answer 200 with the same successor"
            if passed
            else f"all 200: {ok}, distinct successors: {successors}"
        )
        targets.append(Target(f"exactly-once refresh, {mode}, N={s.n}", passed, detail))
    return targets


# --- (a) in-process ------------------------------------------------------------------------------


async def inprocess(sizes: Sequence[int], storms: int) -> list[Series]:
    settings = Settings(secret=secrets.token_urlsafe(32), callback_delay=CALLBACK_DELAY)
    app: FastAPI = create_app(settings)
    counter = app.state.counter

    async def run(n: int, expired: bool) -> Storm:
        login = await call(app, "/login", request_headers())
        cookies = login.set_cookies()
        if expired:
            del cookies[ACCESS]
        headers = request_headers(cookies)
        before = counter.local
        results: list[tuple[float, int, str | None, int]] = []

        async def one() -> None:
            response = await call(app, "/me", headers)
            elapsed = time.perf_counter() - started
            pid = response.json()["pid"] if response.status == 200 else 0
            results.append((elapsed, response.status, response.set_cookies().get(REFRESH), pid))

        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(n):
                tg.start_soon(one)
        return Storm(
            calls=counter.local - before,
            statuses=[r[1] for r in results],
            successors={r[2] for r in results},
            latencies=[r[0] for r in results],
            pids=[r[3] for r in results],
        )

    return await run_series(sizes, storms, run)


# --- (b) two uvicorn workers on one redis-server --------------------------------------------------


async def _pool(port: int, size: int) -> list[tuple[HttpClient, int]]:
    """``size`` open connections, ordered so that consecutive ones alternate between the
    workers that accepted them (by the pid each answers with)."""
    clients = [await HttpClient.connect(port) for _ in range(size)]
    health = HttpClient.encode(port, "/health")
    by_pid: dict[int, list[HttpClient]] = {}
    for client in clients:
        by_pid.setdefault((await client.get(health)).json()["pid"], []).append(client)
    ordered = []
    groups = list(by_pid.items())
    for i in range(max(len(group) for _, group in groups)):
        ordered += [(group[i], pid) for pid, group in groups if i < len(group)]
    return ordered


async def two_workers(
    port: int, redis_url: str, settings: Settings, sizes: Sequence[int], storms: int
) -> list[Series]:
    redis = Redis.from_url(redis_url)
    pool = await _pool(port, max(sizes))
    try:

        async def run(n: int, expired: bool) -> Storm:
            login = await http_get(port, "/login")
            cookies = login.set_cookies()
            if expired:
                del cookies[ACCESS]
            request = HttpClient.encode(port, "/me", cookies)
            before = int(await redis.get(CALLS_KEY) or 0)
            results: list[tuple[float, int, str | None, int]] = []

            async def one(client: HttpClient) -> None:
                response = await client.get(request)
                elapsed = time.perf_counter() - started
                pid = response.json()["pid"] if response.status == 200 else 0
                results.append((elapsed, response.status, response.set_cookies().get(REFRESH), pid))

            started = time.perf_counter()
            async with asyncio.timeout(60):
                await asyncio.gather(*(one(client) for client, _ in pool[:n]))
            return Storm(
                calls=int(await redis.get(CALLS_KEY) or 0) - before,
                statuses=[r[1] for r in results],
                successors={r[2] for r in results},
                latencies=[r[0] for r in results],
                pids=[r[3] for r in results],
            )

        return await run_series(sizes, storms, run)
    finally:
        for client, _ in pool:
            await client.close()
        await redis.aclose()


def measure(sizes: Sequence[int], storms: int) -> list[Target]:
    sizes = sorted(set(sizes))
    delay = f"{CALLBACK_DELAY * 1e3:.0f} ms callback"
    targets = report(
        f"storm (a): in-process, one event loop, {delay}, {storms} storms per N (latencies pooled)",
        asyncio.run(inprocess(sizes, storms)),
        "in-process",
    )
    with workdir("storm") as directory, redis_server(directory) as redis:
        redis_url = redis.url
        settings = Settings(
            secret=secrets.token_urlsafe(32), redis_url=redis_url, callback_delay=CALLBACK_DELAY
        )
        with uvicorn_server(
            "benchmarks.bench_app:app", directory=directory, env=settings.env(), workers=2
        ) as server:
            series = asyncio.run(two_workers(server.port, redis_url, settings, sizes, storms))
    targets += report(
        f"storm (b): 2 uvicorn workers + redis-server, {delay} (Redis INCR), {storms} storms "
        "per N, N open connections alternating between the workers",
        series,
        "2 workers + Redis",
    )
    return targets


def main() -> None:
    parser = bench_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 100, 200])
    parser.add_argument("--storms", type=int, default=5)
    args = parser.parse_args()
    stop_on_sigterm()
    finish(measure(args.sizes, args.storms), args.json)


if __name__ == "__main__":
    main()
