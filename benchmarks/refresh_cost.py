"""What one refreshing request costs, next to a hand-written PyJWT request.

Every measured fastapi-authkit request carries its own refresh token (the kit remembers a
refresh result per refresh token for ``grace_period`` seconds, so a repeated one would be
answered from memory) and an access token that needs refreshing: either within
``interval`` of its expiry or already expired. The refresh callback returns a precomputed
``RefreshResult`` at once, so what is timed is the kit's own work: verify the old token,
run the callback under its timeout, verify the new token, build five Set-Cookie headers.
Each timed chunk checks that the callback ran exactly once per request.

Target: one refreshing request <= 3x a hand-written PyJWT request.

Also reported (no target): the same refresh once the kit already remembers 10,000 recent
refresh results, i.e. 10,000 sessions refreshed within one grace period.

And the kit as its own auth server (the built-in issuer), on the in-memory store and on a
``RedisStore`` (a redis-server on loopback, started here): each request carries its own
session's refresh token and an expired access token, so each one rotates its session.
For Redis the commands each refresh sends are counted (``INFO commandstats`` before and
after every timed chunk, heartbeats aside). Target: one round trip per refresh, the fewest
that keep the rotation exactly-once (before this design: a look, a write, a flight claim, a
finish, a forget and a session check, six).

    .venv/bin/python -m benchmarks.refresh_cost [--rounds 7]
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import time
from typing import Any

from fastapi import FastAPI
from redis.asyncio import Redis

from benchmarks.asgi import Chunk, call, drive, expect_only, interleaved
from benchmarks.cookies import Headers, request_headers
from benchmarks.peers import COOKIE_SECRET, SECRET, access_token, handwritten_pyjwt
from benchmarks.servers import redis_server, workdir
from benchmarks.sessions import session_cookies
from benchmarks.stats import median, paired_ratio
from benchmarks.targets import TIMES, Target, bench_parser, finish, ratio_target, stop_on_sigterm
from fastapi_authkit import (
    AuthKitMiddleware,
    RefreshParam,
    RefreshResult,
    create_issuer,
    create_refresh,
    create_store,
)
from fastapi_authkit.config import AuthStore
from fastapi_authkit.dependencies import CurrentUser
from fastapi_authkit.stores import MemoryStore, RedisStore, SessionStore

from tests.support.round_trips import RoundTrips

INTERVAL = 60
# Enough for any chunk size interleaved() picks, while a whole run stays well under the
# 10,000 remembered results that the "full" measurement is about.
MAX_CHUNK = 800
FULL = 10_000


class KitApp:
    """An app whose every request refreshes; counts the callback's calls."""

    def __init__(self, token_ttl: int) -> None:
        self.token_ttl = token_ttl
        self.calls = 0
        result = RefreshResult(
            is_success=True,
            new_auth_token=access_token(3600),
            new_refresh_token=secrets.token_urlsafe(32),
            new_refresh_token_expires_in=86400,
        )

        async def instant(param: RefreshParam) -> RefreshResult:
            self.calls += 1
            return result

        self.store: AuthStore = create_store(
            secret_key=COOKIE_SECRET,
            token_key=SECRET,
            refresh=create_refresh(interval=INTERVAL, refresh_api_callback=instant),
        )
        self.app = FastAPI()
        self.app.add_middleware(AuthKitMiddleware, store=self.store)

        @self.app.get("/me")
        async def me(user: CurrentUser) -> dict[str, Any]:
            return {"sub": user["sub"]}

        signed_in = session_cookies(
            self.store, access_token(), refresh="x", user_state={"sub": "alice"}
        )
        if set(signed_in) != set(self.store.names.all()):
            raise RuntimeError(f"sign_in sets {sorted(signed_in)}, expected all five cookies")

    def stale_requests(self, n: int) -> list[Headers]:
        """``n`` requests, each a session of its own (its refresh token, and the state and
        CSRF cookies issued with it and with its access token) due for refresh. Built from
        the parts ``sign_in`` uses, as benchmarks/scaling.py does: a refresh needs the
        state cookie of its session."""
        names, codec = self.store.names, self.store.state_codec
        token = access_token(self.token_ttl)  # a negative ttl gives an expired token
        requests = []
        for _ in range(n):
            sid, refresh = secrets.token_urlsafe(18), secrets.token_urlsafe(32)
            cookies = {
                names.access: token,
                names.type: "Bearer",
                names.state: codec.dumps(sid, {"sub": "alice"}, refresh, (token,)),
                names.refresh: refresh,
                names.csrf: self.store.csrf.token_for(sid),
            }
            requests.append(request_headers(cookies))
        return requests

    async def check(self) -> None:
        before = self.calls
        response = await call(self.app, "/me", self.stale_requests(1)[0])
        cookies = response.set_cookies()
        if response.status != 200 or self.calls != before + 1 or not cookies.get("_auth"):
            raise RuntimeError(f"expected a refresh: {response.status} {cookies}")

    def chunk(self, name: str) -> Chunk:
        async def run(n: int) -> float:
            requests = self.stale_requests(n)  # built before the clock starts
            before = self.calls
            us, statuses = await drive(self.app, "/me", requests, n)
            expect_only(statuses, 200, name)
            if self.calls - before != n:
                raise RuntimeError(f"{name}: {self.calls - before} refreshes for {n} requests")
            return us

        return run


class IssuerApp:
    """The kit as its own auth server on ``backend``; every request rotates its own
    session (an expired access token and that session's refresh token)."""

    def __init__(
        self,
        backend: SessionStore,
        round_trips: RoundTrips | None = None,
        *,
        record_sessions: bool = True,
    ) -> None:
        self.round_trips = round_trips
        self.chunks: list[tuple[int, int]] = []  # (refreshes, round trips) per chunk
        self.issuer = create_issuer(backend=backend, signing_key=SECRET, access_ttl=600)
        self.store = create_store(secret_key=COOKIE_SECRET, token_issuer=self.issuer)
        if not record_sessions:
            # The baseline for what recording who refreshed costs: the same rotation, told
            # no client (as before the session list existed), so no record rides with it.
            rotate = self.issuer.rotate

            def unrecorded(refresh_token: str, **options: Any) -> Any:
                return rotate(refresh_token, **{**options, "client": None})

            self.store = dataclasses.replace(self.store, rotation=unrecorded)
        self.app = FastAPI()
        self.app.add_middleware(AuthKitMiddleware, store=self.store)

        @self.app.get("/me")
        async def me(user: CurrentUser) -> dict[str, Any]:
            return {"sub": user["sub"]}

    async def sessions(self, n: int) -> list[Headers]:
        """``n`` signed-in sessions whose access tokens have expired."""
        requests = []
        for i in range(n):
            tokens = await self.issuer.issue(f"user-{i}")
            # An access token that has expired, and the cookies sign_in sets with such a
            # session (the state cookie is bound to the access token it was issued with),
            # built from sign_in's parts as stale_requests does.
            expired = self.issuer.mint_access(f"user-{i}", tokens.family_id, time.time() - 700)
            names, codec, sid = self.store.names, self.store.state_codec, secrets.token_urlsafe(18)
            cookies = {
                names.access: expired,
                names.type: "Bearer",
                names.state: codec.dumps(sid, None, tokens.refresh_token, (expired,)),
                names.refresh: tokens.refresh_token,
                names.csrf: self.store.csrf.token_for(sid),
            }
            # The session's earlier requests verified its state cookie already.
            self.store.state_codec.loads(cookies[self.store.names.state])
            requests.append(request_headers(cookies))
        return requests

    def chunk(self, name: str) -> Chunk:
        async def run(n: int) -> float:
            requests = await self.sessions(n)  # made before the clock starts
            counter = self.round_trips
            before = counter.count if counter is not None else 0
            us, statuses = await drive(self.app, "/me", requests, n)
            expect_only(statuses, 200, name)
            self.chunks.append((n, counter.count - before if counter is not None else 0))
            return us

        return run


def pyjwt_chunk() -> Chunk:
    app, headers = handwritten_pyjwt()

    async def run(n: int) -> float:
        us, statuses = await drive(app, "/me", [headers], n)
        expect_only(statuses, 200, "hand-written PyJWT")
        return us

    return run


NEAR = f"authkit refresh (token {INTERVAL // 2} s from exp)"
EXPIRED = "authkit refresh (token expired)"
PYJWT = "hand-written PyJWT (no refresh)"
ISSUER_MEMORY = "issuer refresh (memory)"
ISSUER_REDIS = "issuer refresh (Redis)"
ISSUER_REDIS_UNRECORDED = "issuer refresh (Redis, no session record)"


def _table(results: dict[str, list[float]], sizes: dict[str, int]) -> None:
    print(f"\n{'variant':40s} {'median':>8s} {'min':>8s} {'max':>8s} {'vs PyJWT':>9s} {'n':>6s}")
    for name, values in results.items():
        ratio = paired_ratio(values, results[PYJWT])
        print(
            f"{name:40s} {median(values):8.1f} {min(values):8.1f} {max(values):8.1f} "
            f"{ratio:8.2f}{TIMES} {sizes[name]:6d}"
        )


async def measure(rounds: int, chunk_seconds: float, redis_url: str) -> list[Target]:
    near, expired = KitApp(token_ttl=INTERVAL // 2), KitApp(token_ttl=-10)
    await near.check()
    await expired.check()
    results, sizes = await interleaved(
        {PYJWT: pyjwt_chunk(), NEAR: near.chunk(NEAR), EXPIRED: expired.chunk(EXPIRED)},
        rounds=rounds,
        chunk_seconds=chunk_seconds,
        max_chunk=MAX_CHUNK,
    )
    print(f"\nrefresh cost: in-process ASGI, µs/request, median of {rounds} interleaved rounds")
    _table(results, sizes)
    targets = [
        ratio_target(
            f"{name} vs hand-written PyJWT", paired_ratio(results[name], results[PYJWT]), "<=", 3.0
        )
        for name in (NEAR, EXPIRED)
    ]

    # The same refresh while the kit remembers FULL recent results (within grace_period).
    full = KitApp(token_ttl=INTERVAL // 2)
    started = time.perf_counter()
    await full.chunk("filling")(FULL)
    filled_in = time.perf_counter() - started
    name = f"authkit refresh, {FULL:,} remembered"
    full_results, full_sizes = await interleaved(
        {PYJWT: pyjwt_chunk(), name: full.chunk(name)},
        rounds=3,
        chunk_seconds=chunk_seconds,
        warmup=150,
        max_chunk=MAX_CHUNK,
    )
    print(
        f"\nafter {FULL:,} refreshes in {filled_in:.1f} s (all within the default "
        f"10 s grace period), 3 rounds:"
    )
    _table(full_results, full_sizes)
    print(
        f"  info: refresh with {FULL:,} remembered results vs hand-written PyJWT: "
        f"{paired_ratio(full_results[name], full_results[PYJWT]):.2f}{TIMES} (no target)"
    )
    targets.append(await issuer_refresh(rounds, chunk_seconds, redis_url))
    return targets


async def issuer_refresh(rounds: int, chunk_seconds: float, redis_url: str) -> Target:
    # Generous timeouts: this measures the kit, not how it fails closed on a slow Redis.
    client = Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
    round_trips = RoundTrips(client)  # the subscriber's own connection is not counted
    backend = RedisStore(client, prefix=f"refresh-{secrets.token_hex(4)}:")
    other = Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
    unrecorded_trips = RoundTrips(other)
    unrecorded_backend = RedisStore(other, prefix=f"refresh-{secrets.token_hex(4)}:")
    memory, on_redis = IssuerApp(MemoryStore()), IssuerApp(backend, round_trips)
    unrecorded = IssuerApp(unrecorded_backend, unrecorded_trips, record_sessions=False)
    try:
        results, sizes = await interleaved(
            {
                PYJWT: pyjwt_chunk(),
                ISSUER_MEMORY: memory.chunk(ISSUER_MEMORY),
                ISSUER_REDIS: on_redis.chunk(ISSUER_REDIS),
                ISSUER_REDIS_UNRECORDED: unrecorded.chunk(ISSUER_REDIS_UNRECORDED),
            },
            rounds=rounds,
            chunk_seconds=chunk_seconds,
            max_chunk=MAX_CHUNK,
        )
    finally:
        await backend.aclose()
        await unrecorded_backend.aclose()
    print(f"\nthe built-in issuer, each request rotating its own session, {rounds} rounds:")
    _table(results, sizes)
    warmup, timed = on_redis.chunks[:2], on_redis.chunks[2:]
    refreshes, trips = sum(n for n, _ in timed), sum(t for _, t in timed)
    print(
        f"  info: Redis round trips per refresh (issuer on Redis): {trips / refreshes:.3f} in "
        f"the timed rounds ({trips:,} in {refreshes:,} refreshes); warm-up "
        f"{sum(t for _, t in warmup)} in {sum(n for n, _ in warmup)} (the first ones ask "
        "again whether the session is live, until the view is current); before this "
        "design: 6 per refresh"
    )
    base_trips = sum(t for _, t in unrecorded.chunks[2:])
    base_refreshes = sum(n for n, _ in unrecorded.chunks[2:])
    print(
        "  info: recording who refreshed (the session list's record, in the rotation's "
        f"pipeline): {paired_ratio(results[ISSUER_REDIS], results[ISSUER_REDIS_UNRECORDED]):.3f}"
        f"{TIMES} the time of the same refresh without it; round trips per refresh "
        f"{trips / refreshes:.3f} vs {base_trips / base_refreshes:.3f} (no target)"
    )
    return Target(
        "issuer on Redis: round trips per refresh",
        trips <= refreshes,
        f"{trips / refreshes:.3f} (target: 1, the rotation, which also says the session is live)",
    )


def main() -> None:
    parser = bench_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--chunk-seconds", type=float, default=0.2)
    args = parser.parse_args()
    stop_on_sigterm()
    with workdir("refresh") as directory, redis_server(directory) as redis:
        targets = asyncio.run(measure(args.rounds, args.chunk_seconds, redis.url))
    finish(targets, args.json)


if __name__ == "__main__":
    main()
