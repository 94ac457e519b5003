"""Per-request cost of fastapi-authkit next to its peers, in-process.

The same FastAPI ``GET /me`` route under each stack, driven straight through the ASGI
callable (no network, no client), so the figure is framework plus auth cost alone:

* bare: no auth at all;
* no-op dependency: ``Depends`` on a function that does nothing (the floor for any
  dependency-based auth);
  (both baselines receive the same Cookie header as the kit: a signed-in browser sends it
  to every route, and FastAPI parses it whether or not anything reads it);
* Starlette ``SessionMiddleware`` (signed-cookie session);
* hand-written PyJWT: a cookie dependency that calls ``jwt.decode`` (what people write);
* authx with its implicit-refresh middleware (when installed);
* fastapi-authkit steady state: ``AuthKitMiddleware`` + ``Depends(current_user)``, a valid
  token an hour from expiry, (a) no refresh configured, (b) refresh configured, not due;
* fastapi-authkit as its own auth server (the built-in issuer, whose sessions can be
  revoked): on the in-memory store, and on a ``RedisStore`` on one redis-server, on a
  3-primary Redis Cluster and on a Sentinel-managed primary (all on loopback, started
  here), where each request is answered from the process's view of revocations while that
  view is provably current (the Redis commands each variant made during the timed rounds
  are counted and reported);
* the kit with the route calling ``get_auth_state(request)`` instead of a dependency (the
  kit's own cost apart from FastAPI's ``Depends``), and a visitor who is not signed in: a
  public route, no cookies, bare and with the kit (reported, no target).

Variants run interleaved for several rounds; medians and per-round paired ratios are
reported. Targets: authkit <= 1.10x the no-op dependency, and its cost above that floor at
most 15 % of what a hand-written PyJWT dependency adds above it; the issuer on memory <= 1.10x
and on Redis (each of the three deployments) <= 1.15x the no-op dependency. The speed-up over
authx is reported, with no target.

    .venv/bin/python -m benchmarks.peers [--rounds 15] [--chunk-seconds 0.25]
"""

# No ``from __future__ import annotations`` here: FastAPI must see the route-local
# dependencies in the annotations as objects, not as names it cannot resolve.

import asyncio
import base64
import importlib.util
import json
import secrets
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Annotated, Any

import itsdangerous
import jwt
from fastapi import Depends, FastAPI, HTTPException, Request

from benchmarks.asgi import Chunk, drive, expect_only, interleaved
from benchmarks.cookies import Headers, request_headers
from benchmarks.servers import redis_cluster, redis_sentinel, redis_server, workdir
from benchmarks.sessions import UnexpectedRefresh, session_cookies
from benchmarks.stats import median, paired_ratio
from benchmarks.targets import TIMES, Target, bench_parser, finish, ratio_target, stop_on_sigterm
from fastapi_authkit import (
    AuthKitMiddleware,
    create_issuer,
    create_refresh,
    create_store,
    get_auth_state,
)
from fastapi_authkit.dependencies import CurrentUser
from fastapi_authkit.stores import MemoryStore, RedisStore, SessionStore
from fastapi_authkit.stores.redis.urls import client_from_url

from tests.support.round_trips import RoundTrips

SECRET = "peers-benchmark-secret-0123456789abcdef"
COOKIE_SECRET = "peers-benchmark-cookie-secret-0123456789"
AUTHX_MISSING = "authx: not installed (pip install -e '.[bench]')"

App = tuple[FastAPI, Headers]


def access_token(ttl: int = 3600) -> str:
    now = int(time.time())
    return jwt.encode({"sub": "alice", "iat": now, "exp": now + ttl}, SECRET, algorithm="HS256")


def browser_headers() -> Headers:
    """The request a signed-in browser sends, with the kit's cookies: the baselines get the
    same bytes, so that FastAPI's own work on a Cookie header (it parses request.cookies
    for every route) counts on both sides and the ratio is the kit's cost alone."""
    return authkit(with_refresh=False)[1]


def bare() -> App:
    app = FastAPI()

    @app.get("/me")
    async def me() -> dict[str, Any]:
        return {"sub": "alice"}

    return app, browser_headers()


def noop_dependency() -> App:
    app = FastAPI()

    async def noop() -> None:
        return None

    @app.get("/me")
    async def me(_: Annotated[None, Depends(noop)]) -> dict[str, Any]:
        return {"sub": "alice"}

    return app, browser_headers()


def session_middleware() -> App:
    from starlette.middleware.sessions import SessionMiddleware

    app = FastAPI()
    app.add_middleware(SessionMiddleware, secret_key=COOKIE_SECRET)

    @app.get("/me")
    async def me(request: Request) -> dict[str, Any]:
        return {"sub": request.session.get("sub")}

    data = base64.b64encode(json.dumps({"sub": "alice"}).encode())
    cookie = itsdangerous.TimestampSigner(COOKIE_SECRET).sign(data).decode()
    return app, request_headers({"session": cookie})


def handwritten_pyjwt() -> App:
    """What a user writes by hand: read the cookie, jwt.decode, 401 on failure."""
    app = FastAPI()

    async def current_user(request: Request) -> dict[str, Any]:
        raw = request.cookies.get("access")
        if not raw:
            raise HTTPException(401)
        try:
            claims: dict[str, Any] = jwt.decode(raw, SECRET, algorithms=["HS256"])
        except jwt.PyJWTError as exc:
            raise HTTPException(401) from exc
        return claims

    @app.get("/me")
    async def me(user: Annotated[dict[str, Any], Depends(current_user)]) -> dict[str, Any]:
        return {"sub": user["sub"]}

    return app, request_headers({"access": access_token()})


def authx_implicit_refresh() -> App:
    from authx import AuthX, AuthXConfig

    config = AuthXConfig(
        JWT_SECRET_KEY=SECRET,
        JWT_TOKEN_LOCATION=["cookies"],
        JWT_COOKIE_CSRF_PROTECT=False,
        JWT_IMPLICIT_REFRESH_DELTATIME=timedelta(minutes=1),
    )
    auth = AuthX(config=config)
    app = FastAPI()
    auth.handle_errors(app)
    app.middleware("http")(auth.implicit_refresh_middleware)

    @app.get("/me")
    async def me(payload: Any = Depends(auth.access_token_required)) -> dict[str, Any]:  # noqa: B008
        return {"sub": payload.sub}

    token = auth.create_access_token(uid="alice", expiry=timedelta(hours=1))
    return app, request_headers({config.JWT_ACCESS_COOKIE_NAME: token})


NEVER_DUE = UnexpectedRefresh()


def authkit(*, with_refresh: bool, route: bool = True) -> App:
    refresh = create_refresh(interval=60, refresh_api_callback=NEVER_DUE) if with_refresh else None
    store = create_store(secret_key=COOKIE_SECRET, token_key=SECRET, refresh=refresh)
    app = FastAPI()
    app.add_middleware(AuthKitMiddleware, store=store)

    if route:

        @app.get("/me")
        async def me(user: CurrentUser) -> dict[str, Any]:
            return {"sub": user["sub"]}

    cookies = session_cookies(
        store,
        access_token(),
        refresh=secrets.token_urlsafe(32) if with_refresh else None,
        user_state={"sub": "alice", "name": "Alice"},
    )
    return app, request_headers(cookies)


def authkit_without_dependency() -> App:
    """The kit with the route reading ``get_auth_state(request)`` itself: no FastAPI
    dependency at all, which shows the kit's own cost apart from FastAPI's ``Depends``."""
    app, headers = authkit(with_refresh=False, route=False)

    @app.get("/me")
    async def me(request: Request) -> dict[str, Any]:
        state = get_auth_state(request)
        if state.claims is None:
            raise HTTPException(401)
        return {"sub": state.claims["sub"]}

    return app, headers


async def issuer_app(backend: SessionStore) -> App:
    """The kit as its own auth server on ``backend``: a signed-in browser's GET /me (every
    request asks whether the session is still live; the answer comes from the store's view
    in this process when it can)."""
    issuer = create_issuer(backend=backend, signing_key=SECRET, access_ttl=3600)
    store = create_store(secret_key=COOKIE_SECRET, token_issuer=issuer)
    app = FastAPI()
    app.add_middleware(AuthKitMiddleware, store=store)

    @app.get("/me")
    async def me(user: CurrentUser) -> dict[str, Any]:
        return {"sub": user["sub"]}

    tokens = await issuer.issue("alice")
    cookies = session_cookies(
        store,
        tokens.access_token,
        refresh=tokens.refresh_token,
        user_state={"sub": "alice", "name": "Alice"},
    )
    return app, request_headers(cookies)


def anonymous(*, with_kit: bool) -> App:
    """A public route (no dependency) and a request without cookies: what the kit costs a
    visitor who is not signed in."""
    app = FastAPI()
    if with_kit:
        store = create_store(secret_key=COOKIE_SECRET, token_key=SECRET)
        app.add_middleware(AuthKitMiddleware, store=store)

    @app.get("/me")
    async def me() -> dict[str, Any]:
        return {"sub": None}

    return app, request_headers()


KIT = "authkit (no refresh)"
KIT_REFRESH = "authkit (refresh, not due)"
NOOP = "no-op dependency"
PYJWT = "hand-written PyJWT"
AUTHX = "authx (implicit refresh)"
KIT_NO_DEP = "authkit, no dependency"
ANON_BARE = "bare, no cookies"
ANON_KIT = "authkit, no cookies"
ISSUER_MEMORY = "authkit + issuer (memory)"
ISSUER_REDIS = "authkit + issuer (Redis)"
ISSUER_CLUSTER = "authkit + issuer (cluster)"
ISSUER_SENTINEL = "authkit + issuer (Sentinel)"

VARIANTS: dict[str, Callable[[], App]] = {
    "bare": bare,
    NOOP: noop_dependency,
    "starlette SessionMiddleware": session_middleware,
    PYJWT: handwritten_pyjwt,
    AUTHX: authx_implicit_refresh,
    KIT: lambda: authkit(with_refresh=False),
    KIT_REFRESH: lambda: authkit(with_refresh=True),
    KIT_NO_DEP: authkit_without_dependency,
    ANON_BARE: lambda: anonymous(with_kit=False),
    ANON_KIT: lambda: anonymous(with_kit=True),
}


def _chunk(name: str, app: FastAPI, headers: Headers) -> Chunk:
    async def run(n: int) -> float:
        us, statuses = await drive(app, "/me", [headers], n)
        expect_only(statuses, 200, name)
        return us

    return run


async def measure(rounds: int, chunk_seconds: float, urls: dict[str, str]) -> list[Target]:
    chunks: dict[str, Chunk] = {}
    for name, build in VARIANTS.items():
        if name == AUTHX and importlib.util.find_spec("authx") is None:
            print(AUTHX_MISSING)
            continue
        chunks[name] = _chunk(name, *build())
    chunks[ISSUER_MEMORY] = _chunk(ISSUER_MEMORY, *await issuer_app(MemoryStore()))
    backends: list[RedisStore] = []
    round_trips: dict[str, RoundTrips] = {}
    for name, url in urls.items():
        # Generous timeouts: this measures the kit, not how it fails closed on a slow Redis.
        client, sentinel = client_from_url(url, timeout=5)
        round_trips[name] = RoundTrips(client)
        backend = RedisStore(client, prefix=f"peers-{secrets.token_hex(4)}:")
        backend._sentinel = sentinel  # closed with the store, as from_url's
        backends.append(backend)
        chunks[name] = _chunk(name, *await issuer_app(backend))
    try:
        before = {name: counter.count for name, counter in round_trips.items()}
        results, sizes = await interleaved(chunks, rounds=rounds, chunk_seconds=chunk_seconds)
        commands = {name: counter.count - before[name] for name, counter in round_trips.items()}
    finally:
        for backend in backends:
            await backend.aclose()
    NEVER_DUE.check(KIT_REFRESH)

    print(
        f"\npeers: in-process ASGI, GET /me, µs/request; median of {rounds} interleaved "
        "rounds; ratios are medians of per-round ratios"
    )
    print(
        f"{'variant':30s} {'median':>8s} {'min':>8s} {'max':>8s} {'vs no-op':>9s} {'n/chunk':>8s}"
    )
    for name, values in results.items():
        ratio = paired_ratio(values, results[NOOP])
        print(
            f"{name:30s} {median(values):8.1f} {min(values):8.1f} {max(values):8.1f} "
            f"{ratio:8.2f}{TIMES} {sizes[name]:8d}"
        )

    print(
        f"  info: {KIT_NO_DEP} (get_auth_state(request) in the route) vs bare: "
        f"{paired_ratio(results[KIT_NO_DEP], results['bare']):.2f}{TIMES} (no target)"
    )
    print(
        f"  info: {ANON_KIT} vs {ANON_BARE}: "
        f"{paired_ratio(results[ANON_KIT], results[ANON_BARE]):.2f}{TIMES} (no target)"
    )
    for name, count in commands.items():
        requests = sizes[name] * rounds + 400  # the timed rounds and the warm-up
        print(
            f"  info: {name}: {count} requests asked Redis, of {requests:,} (the "
            "first, before the view was current; and any while a heartbeat was late)"
        )

    targets = []
    for kit in (KIT, KIT_REFRESH):
        mine = results[kit]
        targets.append(
            ratio_target(
                f"{kit} cost vs no-op dependency", paired_ratio(mine, results[NOOP]), "<=", 1.10
            )
        )
        # What the kit adds above the no-op floor, as a share of what a hand-written PyJWT
        # dependency adds: a "times faster than PyJWT" target is unreachable whenever PyJWT
        # itself costs less than twice the floor, which it does on a fast machine.
        kit_extra = paired_ratio(mine, results[NOOP]) - 1
        pyjwt_extra = paired_ratio(results[PYJWT], results[NOOP]) - 1
        name = f"{kit} cost above the floor, share of hand-written PyJWT's"
        if pyjwt_extra <= 0:
            targets.append(Target(name, None, "hand-written PyJWT cost nothing above the floor"))
        else:
            share = kit_extra / pyjwt_extra
            detail = (
                f"{share:.0%} ({kit_extra:+.2f}{TIMES} vs {pyjwt_extra:+.2f}{TIMES}; target ≤ 15%)"
            )
            targets.append(Target(name, share <= 0.15, detail))
        if AUTHX in results:
            print(
                f"  info: {kit} speed-up over authx: "
                f"{paired_ratio(results[AUTHX], mine):.2f}{TIMES} (no target)"
            )
    limits = [(ISSUER_MEMORY, 1.10), *((name, 1.15) for name in urls)]
    for name, limit in limits:
        targets.append(
            ratio_target(
                f"{name} cost vs no-op dependency",
                paired_ratio(results[name], results[NOOP]),
                "<=",
                limit,
            )
        )
    return targets


def main() -> None:
    parser = bench_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--chunk-seconds", type=float, default=0.25)
    args = parser.parse_args()
    stop_on_sigterm()
    with (
        workdir("peers") as directory,
        redis_server(directory / "single") as single,
        redis_cluster(directory / "cluster") as cluster,
        redis_sentinel(directory / "sentinel", down_after_ms=5000) as sentinel,
    ):
        urls = {
            ISSUER_REDIS: single.url,
            ISSUER_CLUSTER: cluster.url,
            ISSUER_SENTINEL: sentinel.url,
        }
        targets = asyncio.run(measure(args.rounds, args.chunk_seconds, urls))
    finish(targets, args.json)


if __name__ == "__main__":
    main()
