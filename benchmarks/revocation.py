"""How soon every worker refuses a revoked session: two uvicorn workers sharing a
redis-server, the kit as its own auth server (``benchmarks.issuer_app``).

Each worker answers "is this session still live?" from its own view of revocations (kept
current by the revoking scripts' messages), not by asking Redis per request. This measures
what that costs in freshness. For every revocation a fresh session signs in, both workers
serve it (whether each answered from its view, without a Redis read, is checked and
reported), it is revoked through one of them (alternating), and then both are asked again
and again, back to back on open keep-alive connections, until they refuse it:

* sign-out (``POST /logout``), "sign out everywhere" (``POST /logout-everywhere``), and
  reuse detection (the rotated-out refresh token presented again after its successor was
  used; the grace period is 0 here): latency from the revoking response to each worker's
  first refusal of the session's still-valid access token;
* the end of the absolute lifetime, on a second app whose sessions live 3 s (their access
  tokens, refreshed 1.2 s after sign-in, are still valid when it ends): latency from the
  end of the lifetime (sign-in request sent + 3 s) to each worker's first refusal. No
  message is involved: each worker's view knows when the session ends.

Target: p99 and max <= 100 ms over every refusal (>= 200 revocations, two workers each).
With ``--cluster`` the workers share a 3-primary Redis Cluster instead (each worker's view
then listens to every primary; the sessions' families spread over all three).

    .venv/bin/python -m benchmarks.revocation [--per-kind 70] [--absolute 40] [--cluster]
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

from redis.asyncio import Redis

from benchmarks.http_client import HttpClient, HttpResponse
from benchmarks.servers import redis_cluster, redis_server, uvicorn_server, workdir
from benchmarks.stats import percentile
from benchmarks.targets import Target, bench_parser, finish, stop_on_sigterm

LIMIT = 0.100
ACCESS, REFRESH, CSRF = "_auth", "_auth_refresh", "_auth_csrf"
ABSOLUTE_TTL, ACCESS_TTL, REFRESH_AFTER = 3.0, 2.0, 1.2


class Workers:
    """Open keep-alive connections to each of the two workers, checked out one at a time."""

    def __init__(self, port: int, pools: dict[int, asyncio.Queue[HttpClient]]) -> None:
        self.port = port
        self.pools = pools
        self.pids = sorted(pools)

    @classmethod
    async def connect(cls, port: int, per_worker: int) -> Workers:
        pools: dict[int, asyncio.Queue[HttpClient]] = {}
        strays = []
        health = HttpClient.encode(port, "/health")
        for _ in range(per_worker * 20):
            if len(pools) == 2 and all(q.qsize() >= per_worker for q in pools.values()):
                break
            client = await HttpClient.connect(port)
            pid = (await client.get(health)).json()["pid"]
            queue = pools.setdefault(pid, asyncio.Queue())
            if queue.qsize() < per_worker:
                queue.put_nowait(client)
            else:
                strays.append(client)
        for client in strays:
            await client.close()
        if len(pools) != 2:
            raise RuntimeError(f"only worker(s) {sorted(pools)} accepted connections")
        return cls(port, pools)

    @contextlib.asynccontextmanager
    async def client(self, pid: int) -> AsyncIterator[HttpClient]:
        client = await self.pools[pid].get()
        try:
            yield client
        finally:
            self.pools[pid].put_nowait(client)

    async def request(
        self, pid: int, path: str, cookies: Mapping[str, str], method: str = "GET"
    ) -> HttpResponse:
        headers = {"x-csrf-token": cookies[CSRF]} if method != "GET" else None
        async with self.client(pid) as client:
            return await client.get(
                HttpClient.encode(self.port, path, cookies, method=method, headers=headers)
            )

    async def close(self) -> None:
        for queue in self.pools.values():
            while not queue.empty():
                await queue.get_nowait().close()


def jar_after(jar: Mapping[str, str], response: HttpResponse) -> dict[str, str]:
    new = dict(jar)
    for name, value in response.set_cookies().items():
        if value:
            new[name] = value
        else:
            new.pop(name, None)
    return new


class StoreReads:
    """Counts the session checks that went to Redis (HMGET of a family), to tell a request
    answered from a worker's view from one that asked the store."""

    def __init__(self, nodes: list[Redis]) -> None:
        self.nodes = nodes  # every server that holds sessions (a cluster's primaries)

    async def count(self) -> int:
        total = 0
        for node in self.nodes:
            stats = await node.info("commandstats")
            total += int(stats.get("cmdstat_hmget", {}).get("calls", 0))
        return total


def node_urls(url: str) -> list[str]:
    """The servers behind a benchmark's ``redis://`` or ``redis+cluster://`` URL."""
    if url.startswith("redis+cluster://"):
        return [f"redis://{node}" for node in url.removeprefix("redis+cluster://").split(",")]
    return [url]


@dataclass
class Results:
    latencies: dict[str, list[float]] = field(default_factory=dict)  # kind -> seconds
    by_role: dict[str, list[float]] = field(default_factory=dict)  # revoking/other worker
    from_view: int = 0  # sessions both workers served from their views just before
    sessions: int = 0

    def add(self, kind: str, role: str, latency: float) -> None:
        self.latencies.setdefault(kind, []).append(latency)
        self.by_role.setdefault(role, []).append(latency)

    def all(self) -> list[float]:
        return [x for values in self.latencies.values() for x in values]


async def sign_in(workers: Workers, pid: int, sub: str) -> dict[str, str]:
    response = await workers.request(pid, f"/login?sub={sub}", {})
    if response.status != 200:
        raise RuntimeError(f"login failed: {response.status} {response.body!r}")
    return jar_after({}, response)


async def served_by_both(workers: Workers, jar: Mapping[str, str], reads: StoreReads) -> bool:
    """Both workers answer 200 for the session; True when each last answer needed no Redis
    read (it came from that worker's view)."""
    from_view = True
    for pid in workers.pids:
        for attempt in range(3):
            before = await reads.count()
            response = await workers.request(pid, "/me", jar)
            if response.status != 200:
                raise RuntimeError(f"session not served: {response.status} {response.body!r}")
            if attempt and await reads.count() == before:
                break
        else:
            from_view = False
    return from_view


async def until_refused(workers: Workers, pid: int, jar: Mapping[str, str], since: float) -> float:
    request = HttpClient.encode(workers.port, "/me", jar)
    async with workers.client(pid) as client:
        while True:
            response = await client.get(request)
            if response.status == 401:
                return time.perf_counter() - since
            if response.status != 200:
                raise RuntimeError(f"unexpected {response.status}: {response.body!r}")
            if time.perf_counter() - since > 10:
                raise RuntimeError("a revoked session was still served after 10 s")


async def revoke(workers: Workers, pid: int, kind: str, jar: dict[str, str]) -> None:
    if kind == "sign-out":
        response = await workers.request(pid, "/logout", jar, method="POST")
    elif kind == "everywhere":
        response = await workers.request(pid, "/logout-everywhere", jar, method="POST")
    else:  # reuse: rotate, use the successor, then present the rotated-out token again
        stale = {k: v for k, v in jar.items() if k != ACCESS}
        rotated = await workers.request(pid, "/me", stale)
        if rotated.status != 200 or REFRESH not in rotated.set_cookies():
            raise RuntimeError(f"no rotation: {rotated.status} {rotated.set_cookies()}")
        successor = {k: v for k, v in jar_after(stale, rotated).items() if k != ACCESS}
        used = await workers.request(pid, "/me", successor)
        if used.status != 200:
            raise RuntimeError(f"the successor did not work: {used.status}")
        response = await workers.request(pid, "/me", stale)
        if response.status != 401:
            raise RuntimeError(f"reuse not detected: {response.status}")
        return
    if response.status != 200 or response.json().get("revoked") is not True:
        raise RuntimeError(f"{kind} failed: {response.status} {response.body!r}")


async def message_revocations(port: int, redis_url: str, per_kind: int) -> Results:
    workers = await Workers.connect(port, per_worker=2)
    nodes = [Redis.from_url(url) for url in node_urls(redis_url)]
    reads, results = StoreReads(nodes), Results()
    try:
        for i in range(3 * per_kind):
            kind = ("sign-out", "everywhere", "reuse")[i % 3]
            revoking = workers.pids[i % 2]
            other = workers.pids[(i + 1) % 2]
            jar = await sign_in(workers, revoking, f"user-{i}")
            results.sessions += 1
            results.from_view += await served_by_both(workers, jar, reads)
            await revoke(workers, revoking, kind, jar)
            since = time.perf_counter()
            mine, theirs = await asyncio.gather(
                until_refused(workers, revoking, jar, since),
                until_refused(workers, other, jar, since),
            )
            results.add(kind, "revoking worker", mine)
            results.add(kind, "other worker", theirs)
    finally:
        await workers.close()
        for node in nodes:
            await node.aclose()
    return results


async def absolute_expiries(port: int, sessions: int) -> Results:
    spacing = 0.025
    workers = await Workers.connect(port, per_worker=8)
    results = Results(from_view=-1)
    start = time.perf_counter() + 0.1

    async def at(moment: float) -> None:
        await asyncio.sleep(max(0.0, moment - time.perf_counter()))

    async def one(i: int) -> None:
        pid = workers.pids[i % 2]
        await at(start + i * spacing)
        sent = time.perf_counter()
        jar = await sign_in(workers, pid, f"lifetime-{i}")
        ends = sent + ABSOLUTE_TTL  # the store's end is at least this late
        await at(sent + REFRESH_AFTER)
        response = await workers.request(pid, "/me", {k: v for k, v in jar.items() if k != ACCESS})
        if response.status != 200 or ACCESS not in response.set_cookies():
            raise RuntimeError(f"no refresh: {response.status}")
        jar = jar_after(jar, response)  # an access token valid past the end of the session
        results.sessions += 1
        for worker in workers.pids:  # (Redis's global counts cannot tell whose read a read
            # is while other sessions refresh concurrently: not checked here)
            served = await workers.request(worker, "/me", jar)
            if served.status != 200:
                raise RuntimeError(f"session not served: {served.status}")
        await at(ends - 0.02)
        for role, latency in zip(
            ("this worker", "other worker"),
            await asyncio.gather(
                until_refused(workers, pid, jar, ends),
                until_refused(workers, workers.pids[(i + 1) % 2], jar, ends),
            ),
            strict=True,
        ):
            results.add("absolute lifetime", role, max(0.0, latency))

    try:
        await asyncio.gather(*(one(i) for i in range(sessions)))
    finally:
        await workers.close()
    return results


def report(title: str, results: Results) -> None:
    print(f"\n{title}")
    print(f"{'':26s} {'n':>5s} {'p50 ms':>8s} {'p99 ms':>8s} {'max ms':>8s}")
    rows = {**results.latencies, **{f"  {k}": v for k, v in results.by_role.items()}}
    for name, values in rows.items():
        print(
            f"{name:26s} {len(values):5d} {percentile(values, 0.5) * 1e3:8.2f} "
            f"{percentile(values, 0.99) * 1e3:8.2f} {max(values) * 1e3:8.2f}"
        )
    if results.from_view >= 0:
        print(
            f"  sessions both workers served from their views just before: "
            f"{results.from_view}/{results.sessions}"
        )


def measure(per_kind: int, absolute: int, *, cluster: bool = False) -> list[Target]:
    secret = secrets.token_urlsafe(32)
    launch = redis_cluster if cluster else redis_server
    deployment = "a 3-primary Redis Cluster" if cluster else "redis-server"
    with workdir("revocation") as directory, launch(directory) as redis:
        redis_url = redis.url
        env = {"BENCH_SECRET": secret, "BENCH_REDIS_URL": redis_url}
        with uvicorn_server(
            "benchmarks.issuer_app:app", directory=directory, env=env, workers=2
        ) as server:
            messages = asyncio.run(message_revocations(server.port, redis_url, per_kind))
        short = {
            **env,
            "BENCH_ABSOLUTE_TTL": str(ABSOLUTE_TTL),
            "BENCH_IDLE_TTL": str(ABSOLUTE_TTL),
            "BENCH_ACCESS_TTL": str(ACCESS_TTL),
        }
        with uvicorn_server(
            "benchmarks.issuer_app:app", directory=directory, env=short, workers=2
        ) as server:
            lifetimes = asyncio.run(absolute_expiries(server.port, absolute))
    report(
        f"revocation: 2 uvicorn workers + {deployment}; from the revoking response to each "
        "worker's first refusal",
        messages,
    )
    report(
        "absolute lifetime: from the end of the session's lifetime to each worker's first "
        "refusal of its still-valid access token",
        lifetimes,
    )
    every = messages.all() + lifetimes.all()
    revocations = messages.sessions + lifetimes.sessions
    p99, worst = percentile(every, 0.99), max(every)
    detail = (
        f"p99 {p99 * 1e3:.1f} ms, max {worst * 1e3:.1f} ms over {len(every)} refusals "
        f"({revocations} revocations x 2 workers; target <= {LIMIT * 1e3:.0f} ms)"
    )
    return [
        Target(
            f"every worker refuses a revoked session within 100 ms (p99 and max)"
            f"{' on a cluster' if cluster else ''}",
            p99 <= LIMIT and worst <= LIMIT and revocations >= 200,
            detail,
        )
    ]


def main() -> None:
    parser = bench_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--per-kind", type=int, default=70)
    parser.add_argument("--absolute", type=int, default=40)
    parser.add_argument("--cluster", action="store_true", help="on a 3-primary cluster")
    args = parser.parse_args()
    stop_on_sigterm()
    finish(measure(args.per_kind, args.absolute, cluster=args.cluster), args.json)


if __name__ == "__main__":
    main()
