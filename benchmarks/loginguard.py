"""What the login guard adds to a sign-in attempt, next to the password hash it protects.

Each timed call is one attempt as a login route makes it: ``async with guard.attempt(...)``
around nothing (the hash is timed on its own), marked failed (the attacker's case: one
store call) or succeeded (two: the count, then the reset). Accounts and addresses rotate
over a thousand of each, with limits high enough that nothing locks: what is timed is the
counting, not a refusal. The hash is ``hashlib.scrypt`` (n=2**14, r=8, p=1: 16 MiB, below
OWASP's recommended n=2**17, so the ratio is on the guard's unfavourable side); argon2id
would be the usual choice in an app, but argon2-cffi is not a dependency (it could join the
bench extra). On Redis (a redis-server on loopback, started here) the round trips of each
attempt are counted.

Targets: the guard on the in-memory store <= 5 % of the hash; on Redis <= 5 % too; one
round trip per failed attempt on Redis (both counters in one pipeline).

    .venv/bin/python -m benchmarks.loginguard [--rounds 5]
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis
from starlette.requests import Request

from benchmarks.asgi import interleaved
from benchmarks.servers import redis_server, workdir
from benchmarks.stats import median, paired_ratio
from benchmarks.targets import Target, bench_parser, finish, stop_on_sigterm
from fastapi_authkit import create_login_guard
from fastapi_authkit.loginguard import LoginGuard
from fastapi_authkit.stores import MemoryStore, RedisStore

from tests.support.round_trips import RoundTrips

HASH = "scrypt (n=2**14, r=8, p=1)"
GUARD_MEMORY = "guard, failed attempt, memory"
GUARD_MEMORY_OK = "guard, successful attempt, memory"
GUARD_REDIS = "guard, failed attempt, Redis"
GUARD_REDIS_OK = "guard, successful attempt, Redis"
NAMES = 1000
SALT = secrets.token_bytes(16)

Chunk = Callable[[int], Awaitable[float]]


def scrypt_chunk() -> Chunk:
    async def run(n: int) -> float:
        start = time.perf_counter()
        for i in range(n):
            hashlib.scrypt(b"correct horse %d" % i, salt=SALT, n=2**14, r=8, p=1)
        return (time.perf_counter() - start) * 1e6 / n

    return run


def requests() -> list[Request]:
    return [
        Request(
            {
                "type": "http",
                "method": "POST",
                "path": "/login",
                "headers": [],
                "client": (f"198.51.{i // 256}.{i % 256}", 40000),
            }
        )
        for i in range(NAMES)
    ]


def guard_chunk(guard: LoginGuard, *, succeed: bool) -> Chunk:
    pool = requests()
    accounts = [f"user{i}@example.com" for i in range(NAMES)]

    async def run(n: int) -> float:
        start = time.perf_counter()
        for i in range(n):
            async with guard.attempt(pool[i % NAMES], account=accounts[i % NAMES]) as attempt:
                if succeed:
                    attempt.succeeded()
                else:
                    attempt.failed()
        return (time.perf_counter() - start) * 1e6 / n

    return run


def share_target(name: str, guard: list[float], hashing: list[float]) -> Target:
    """The guard's time per failed attempt as a share of the hash's (target <= 5 %)."""
    share = paired_ratio(guard, hashing)
    detail = f"{share * 100:.3f} % of the hash (target <= 5 %)"
    return Target(f"{name} vs {HASH}, failed attempt", share <= 0.05, detail)


def make_guard(backend: Any) -> LoginGuard:
    # Nothing locks: the counting is timed, not the refusal.
    return create_login_guard(
        backend=backend, max_failures=10**9, max_address_failures=10**9, forget_after=600
    )


async def measure(rounds: int, chunk_seconds: float, redis_url: str) -> list[Target]:
    client = Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
    trips = RoundTrips(client)
    backend = RedisStore(client, prefix=f"guard-bench-{secrets.token_hex(4)}:", view_size=0)
    on_redis = make_guard(backend)
    on_memory = make_guard(MemoryStore())
    failed_redis = guard_chunk(on_redis, succeed=False)
    counted: dict[str, tuple[int, int]] = {}

    def counting(name: str, chunk: Chunk) -> Chunk:
        async def run(n: int) -> float:
            before = trips.count
            us = await chunk(n)
            done, sent = counted.get(name, (0, 0))
            counted[name] = (done + n, sent + trips.count - before)
            return us

        return run

    try:
        await backend.check()
        results, sizes = await interleaved(
            {
                HASH: scrypt_chunk(),
                GUARD_MEMORY: guard_chunk(on_memory, succeed=False),
                GUARD_MEMORY_OK: guard_chunk(on_memory, succeed=True),
                GUARD_REDIS: counting(GUARD_REDIS, failed_redis),
                GUARD_REDIS_OK: counting(GUARD_REDIS_OK, guard_chunk(on_redis, succeed=True)),
            },
            rounds=rounds,
            chunk_seconds=chunk_seconds,
            warmup=30,
        )
    finally:
        await backend.aclose()
    print(f"\none sign-in attempt, {rounds} rounds (median µs per attempt, chunk size):")
    for name, values in results.items():
        print(f"  {name:<36} {median(values):>12,.1f} µs  ({sizes[name]:,} per chunk)")
    for name in (GUARD_MEMORY, GUARD_MEMORY_OK, GUARD_REDIS, GUARD_REDIS_OK):
        ratio = paired_ratio(results[name], results[HASH])
        print(f"  info: {name} / hash: {ratio * 100:.3f} %")
    for name, (done, sent) in counted.items():
        print(f"  info: Redis round trips per attempt ({name}): {sent / done:.3f}")
    failed_done, failed_sent = counted[GUARD_REDIS]
    return [
        share_target("guard on memory", results[GUARD_MEMORY], results[HASH]),
        share_target("guard on Redis", results[GUARD_REDIS], results[HASH]),
        Target(
            "guard on Redis: round trips per failed attempt",
            failed_sent <= failed_done,
            f"{failed_sent / failed_done:.3f} (target: 1; a success adds the reset: 2)",
        ),
    ]


def main() -> None:
    parser = bench_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--chunk-seconds", type=float, default=0.3)
    args = parser.parse_args()
    stop_on_sigterm()
    with workdir("loginguard") as directory, redis_server(directory) as redis:
        targets = asyncio.run(measure(args.rounds, args.chunk_seconds, redis.url))
    finish(targets, args.json)


if __name__ == "__main__":
    main()
